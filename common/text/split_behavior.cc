#include "common/text/split_behavior.h"

#include <algorithm>

namespace hc {

std::optional<SplitBehavior> ParseSplitBehavior(std::string_view name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return std::nullopt;
}

namespace {

struct Segment {
  size_t begin, end;
  bool flag;  // on input: a match; on output: to be removed
};

}  // namespace

// The folds below follow `tokenizers`' NormalizedString::split step by step,
// so that edge cases (a match at the start, consecutive matches) agree.
void ApplySplitBehavior(std::string_view text,
                        const std::vector<std::pair<size_t, size_t>>& matches,
                        SplitBehavior behavior, bool invert, std::vector<std::string_view>* out) {
  std::vector<Segment> segs;
  segs.reserve(matches.size() * 2 + 1);
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (b != prev) segs.push_back({prev, b, false});
    segs.push_back({b, e, true});
    prev = e;
  }
  if (prev != text.size()) segs.push_back({prev, text.size(), false});
  if (invert) {
    for (Segment& s : segs) s.flag = !s.flag;
  }
  std::vector<Segment> res;
  res.reserve(segs.size());
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      res = segs;  // flag = is a match = removed
      break;
    case SplitBehavior::kIsolated:
      for (const Segment& s : segs) res.push_back({s.begin, s.end, false});
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Segment& s : segs) {
        if (s.flag && !previous_match && !res.empty()) {
          res.back().end = s.end;
        } else {
          res.push_back({s.begin, s.end, false});
        }
        previous_match = s.flag;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->flag && !previous_match && !res.empty()) {
          res.back().begin = it->begin;
        } else {
          res.push_back({it->begin, it->end, false});
        }
        previous_match = it->flag;
      }
      std::reverse(res.begin(), res.end());
      break;
    case SplitBehavior::kContiguous:
      for (const Segment& s : segs) {
        if (s.flag == previous_match && !res.empty()) {
          res.back().end = s.end;
        } else {
          res.push_back({s.begin, s.end, false});
        }
        previous_match = s.flag;
      }
      break;
  }
  for (const Segment& s : res) {
    if (!s.flag && s.end > s.begin) out->push_back(text.substr(s.begin, s.end - s.begin));
  }
}

}  // namespace hc
