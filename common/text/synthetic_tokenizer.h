// The tokenizer of the synthetic checkpoints (hc-checkpoint, --model
// synthetic:<preset>): a byte-level BPE trained deterministically on an
// embedded corpus, with Granite-style special tokens and chat template. It
// lives in common/ because both processes need it: the worker writes it into
// the generated checkpoint, and a router that runs without that checkpoint
// (its own pod) regenerates the identical files for itself.
#ifndef HC_COMMON_TEXT_SYNTHETIC_TOKENIZER_H_
#define HC_COMMON_TEXT_SYNTHETIC_TOKENIZER_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/text/bpe_trainer.h"

namespace hc {

// Special tokens, ids 0.. in this order: end of text (BOS and EOS), pad,
// start of role, end of role.
const std::vector<std::string>& SyntheticSpecialTokens();
inline constexpr int kSyntheticEndOfTextId = 0;
inline constexpr int kSyntheticPadId = 1;

struct SyntheticTokenizerSpec {
  int vocab_target = 1024;  // special + byte tokens + merges
  int augment_rounds = 0;   // corpus variety (larger vocabularies need more)
  int model_max_length = 4096;
};

// INVALID_ARGUMENT for an unknown preset (tiny, small). Presets of other
// architectures, "<arch>[-variant]-tiny|small" (e.g. granite-moe-tiny), use the
// tokenizer of their size.
absl::StatusOr<SyntheticTokenizerSpec> SyntheticTokenizerSpecFor(std::string_view preset);

// Deterministic: the same spec gives the same vocabulary and merges.
BpeModel TrainSyntheticTokenizer(const SyntheticTokenizerSpec& spec);

// tokenizer_config.json for `tok`: special tokens, the Granite chat template,
// model_max_length.
std::string SyntheticTokenizerConfigJson(const BpeModel& tok, int model_max_length);

// Writes tokenizer.json and tokenizer_config.json of `preset` into `dir`
// (created if needed).
absl::Status WriteSyntheticTokenizerFiles(std::string_view preset, const std::string& dir);

}  // namespace hc

#endif  // HC_COMMON_TEXT_SYNTHETIC_TOKENIZER_H_
