// Incremental stop-string matching over a byte stream (an Aho-Corasick
// automaton over the stop strings). Built once per turn; each Feed costs
// amortized O(1) per byte whatever the number or length of the stop strings,
// so a step never rescans text already seen.
//
// Matching semantics are those of feeding the stream one byte at a time: the
// stream stops at the first byte where some stop string ends; of the stop
// strings ending there, the longest (the one starting earliest) is the match.
// So the result does not depend on how the bytes are split into tokens.
//
// Both the worker (which decides where a turn stops) and the router (which
// holds back text that could still become a stop string) use it on the same
// bytes: the generated tokens' bytes, special tokens counting as none.
//
// Thread-safety: none; one matcher belongs to one stream. Copyable.
#ifndef HC_COMMON_TEXT_STOP_MATCHER_H_
#define HC_COMMON_TEXT_STOP_MATCHER_H_

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hc {

class StopMatcher {
 public:
  struct Match {
    int64_t begin = 0;  // stream offset of the stop string's first byte
    int64_t end = 0;    // stream offset one past its last byte
  };

  // A matcher that never matches (no stop strings).
  StopMatcher();
  // REQUIRES: no empty string (callers validate; an empty one is ignored).
  explicit StopMatcher(std::span<const std::string> stops);

  bool empty() const { return nodes_.size() == 1; }

  // Appends `bytes` to the stream. Returns the first match ending inside
  // them, if any; the bytes after it are not consumed (the stream has
  // stopped: later calls return the same match and consume nothing).
  std::optional<Match> Feed(std::string_view bytes);

  // Length of the longest suffix of the stream that is a prefix of some stop
  // string (a whole one included): the bytes that may still turn out to be
  // part of a stop string. After a match: from the match's begin to the end.
  int64_t HeldBytes() const;
  // Bytes consumed so far.
  int64_t offset() const { return offset_; }
  std::optional<Match> match() const { return match_; }
  // Automaton states (for tests and sizing): 1 + the distinct prefixes.
  size_t num_states() const { return nodes_.size(); }

 private:
  struct Node {
    int32_t fail = 0;
    int32_t depth = 0;
    // Length of the longest stop string that is a suffix of this node's
    // string (0: none).
    int32_t out = 0;
    uint32_t first_edge = 0;  // edges_[first_edge, first_edge + num_edges), sorted by byte
    uint32_t num_edges = 0;
  };
  struct Edge {
    uint8_t byte;
    int32_t to;
  };
  int32_t Child(int32_t node, uint8_t byte) const;
  int32_t Step(int32_t node, uint8_t byte) const;

  std::vector<Node> nodes_;
  std::vector<Edge> edges_;
  std::array<int32_t, 256> root_{};  // dense root transitions (-1: none)
  int32_t state_ = 0;
  int64_t offset_ = 0;
  std::optional<Match> match_;
};

}  // namespace hc

#endif  // HC_COMMON_TEXT_STOP_MATCHER_H_
