// A compiled Unicode regular expression run by Oniguruma, the engine the
// Hugging Face `tokenizers` library uses for its Split pre-tokenizer and
// Replace normalizer (through the `onig` crate: UTF-8, ONIG_OPTION_NONE, the
// default syntax). The same engine with the same Unicode tables gives the same
// matches, so our pre-tokenization equals theirs by construction.
//
// Thread-safety: immutable after Compile; FindAll may run concurrently (each
// call has its own match region; Oniguruma's search reads the compiled
// pattern only).
#ifndef HC_COMMON_TEXT_UNICODE_REGEX_H_
#define HC_COMMON_TEXT_UNICODE_REGEX_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace hc {

class UnicodeRegex {
 public:
  // INVALID_ARGUMENT with Oniguruma's message when `pattern` does not compile.
  static absl::StatusOr<std::unique_ptr<UnicodeRegex>> Compile(std::string_view pattern);
  // A regex matching `literal` exactly (every character escaped).
  static absl::StatusOr<std::unique_ptr<UnicodeRegex>> CompileLiteral(std::string_view literal);
  ~UnicodeRegex();
  UnicodeRegex(const UnicodeRegex&) = delete;
  UnicodeRegex& operator=(const UnicodeRegex&) = delete;

  // Appends the [begin, end) byte ranges of the successive non-overlapping
  // matches in `text` (REQUIRES: valid UTF-8), as the `onig` crate's
  // find_iter yields them: after an empty match right at the end of the
  // previous one the search moves on by one character.
  void FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const;

  const std::string& pattern() const { return pattern_; }

 private:
  UnicodeRegex() = default;
  std::string pattern_;
  void* regex_ = nullptr;  // OnigRegex; kept opaque so users need no Oniguruma headers
};

}  // namespace hc

#endif  // HC_COMMON_TEXT_UNICODE_REGEX_H_
