#include "common/model_path.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace hc {

std::string ModelCacheRoot() {
  if (const char* d = std::getenv("HC_CACHE_DIR"); d != nullptr && *d != '\0') return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d != nullptr && *d != '\0') {
    return absl::StrCat(d, "/hybridcache");
  }
  if (const char* d = std::getenv("HOME"); d != nullptr && *d != '\0') {
    return absl::StrCat(d, "/.cache/hybridcache");
  }
  return "/tmp/hybridcache-cache";
}

std::string SyntheticModelDir(std::string_view preset) {
  return absl::StrCat(ModelCacheRoot(), "/synthetic-", std::string(preset), "-v",
                      kSyntheticFormatVersion);
}

std::string_view SyntheticPreset(std::string_view spec) {
  constexpr std::string_view kPrefix = "synthetic:";
  return spec.substr(0, kPrefix.size()) == kPrefix ? spec.substr(kPrefix.size())
                                                   : std::string_view();
}

}  // namespace hc
