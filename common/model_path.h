// Where model specs resolve to on disk, shared by the worker (which loads and,
// for synthetic presets, generates the checkpoint) and the router (which reads
// the same directory's tokenizer files).
#ifndef HC_COMMON_MODEL_PATH_H_
#define HC_COMMON_MODEL_PATH_H_

#include <string>
#include <string_view>

namespace hc {

// Bumped whenever the synthetic checkpoint format changes, so stale caches are
// never read.
inline constexpr int kSyntheticFormatVersion = 2;

// $HC_CACHE_DIR, else $XDG_CACHE_HOME/hybridcache, else ~/.cache/hybridcache.
std::string ModelCacheRoot();

// <ModelCacheRoot()>/synthetic-<preset>-v<kSyntheticFormatVersion>.
std::string SyntheticModelDir(std::string_view preset);

// "synthetic:<preset>" -> its preset name; empty for anything else.
std::string_view SyntheticPreset(std::string_view spec);

}  // namespace hc

#endif  // HC_COMMON_MODEL_PATH_H_
