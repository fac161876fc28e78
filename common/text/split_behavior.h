// How a Split pre-tokenizer (or Digits) turns pattern matches into pieces:
// the five SplitDelimiterBehavior values of the `tokenizers` library, applied
// to the matches of a pattern in one piece of text.
#ifndef HC_COMMON_TEXT_SPLIT_BEHAVIOR_H_
#define HC_COMMON_TEXT_SPLIT_BEHAVIOR_H_

#include <cstddef>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace hc {

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// The behavior named `name` in tokenizer.json ("Isolated", ...), if any.
std::optional<SplitBehavior> ParseSplitBehavior(std::string_view name);

// Appends to `out` the non-empty pieces of `text` that `behavior` makes of
// `matches` (sorted, non-overlapping byte ranges of `text`); with `invert`
// the gaps between matches play the matches' part.
void ApplySplitBehavior(std::string_view text,
                        const std::vector<std::pair<size_t, size_t>>& matches,
                        SplitBehavior behavior, bool invert, std::vector<std::string_view>* out);

}  // namespace hc

#endif  // HC_COMMON_TEXT_SPLIT_BEHAVIOR_H_
