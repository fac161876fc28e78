// The added tokens of a tokenizer.json and how the `tokenizers` library finds
// them in text: leftmost-longest matching over all tokens of one kind, then
// per match the token's options:
//   special      rejected where the caller does not allow special tokens; the
//                rejected match still consumes its text in this matcher (a
//                shorter token there is not tried; the normalized matcher
//                runs later on the text and may still find one)
//   single_word  only when neither neighbour is a word character
//   lstrip       the whitespace before the token joins it
//   rstrip       the whitespace after the token joins it
//   normalized   matched in the normalized text (normalized content) instead
//                of the raw text
// Thread-safety: immutable after construction.
#ifndef HC_COMMON_TEXT_ADDED_VOCABULARY_H_
#define HC_COMMON_TEXT_ADDED_VOCABULARY_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace hc {

using TokenId = int32_t;

struct AddedToken {
  TokenId id = -1;
  std::string content;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

// A piece of text: an added token's id, or -1 for ordinary text.
struct TextSegment {
  TokenId id;
  size_t begin, end;  // byte range of the text
};

// Finds a set of added tokens (one matching pass: the non-normalized tokens
// in raw text, or the normalized ones in normalized text).
class AddedTokenMatcher {
 public:
  // `patterns[k]` is what token `tokens[k]` matches (its content, normalized
  // for a normalized token).
  AddedTokenMatcher(std::vector<AddedToken> tokens, std::vector<std::string> patterns);

  bool empty() const { return tokens_.empty(); }
  // Cuts `text` into ordinary segments and token segments covering it in
  // order. `special_allowed(pos)` says whether a special token may match at
  // byte `pos`.
  void Split(std::string_view text, const std::function<bool(size_t)>& special_allowed,
             std::vector<TextSegment>* out) const;

 private:
  std::vector<AddedToken> tokens_;
  std::vector<std::string> patterns_;
  // First byte -> indices into tokens_, longest pattern first.
  std::vector<std::vector<int>> by_first_byte_;
};

}  // namespace hc

#endif  // HC_COMMON_TEXT_ADDED_VOCABULARY_H_
