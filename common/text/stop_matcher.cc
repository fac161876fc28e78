#include "common/text/stop_matcher.h"

#include <algorithm>
#include <deque>
#include <utility>

namespace hc {

StopMatcher::StopMatcher() : nodes_(1) { root_.fill(0); }

StopMatcher::StopMatcher(std::span<const std::string> stops) : StopMatcher() {
  // The trie, with children in per-node lists while it is built.
  std::vector<std::vector<std::pair<uint8_t, int32_t>>> children(1);
  std::vector<bool> terminal(1, false);
  for (const std::string& stop : stops) {
    if (stop.empty()) continue;
    int32_t node = 0;
    for (const char c : stop) {
      const auto b = static_cast<uint8_t>(c);
      auto& kids = children[node];
      auto it = std::find_if(kids.begin(), kids.end(), [b](const auto& e) { return e.first == b; });
      if (it != kids.end()) {
        node = it->second;
        continue;
      }
      const auto child = static_cast<int32_t>(nodes_.size());
      kids.emplace_back(b, child);
      nodes_.push_back(Node{.depth = nodes_[node].depth + 1});
      children.emplace_back();
      terminal.push_back(false);
      node = child;
    }
    terminal[node] = true;
  }
  // Flatten the edges, sorted by byte for binary search; the root is dense.
  for (size_t n = 0; n < nodes_.size(); ++n) {
    auto& kids = children[n];
    std::sort(kids.begin(), kids.end());
    nodes_[n].first_edge = static_cast<uint32_t>(edges_.size());
    nodes_[n].num_edges = static_cast<uint32_t>(kids.size());
    for (const auto& [b, to] : kids) {
      edges_.push_back(Edge{b, to});
      if (n == 0) root_[b] = to;
    }
  }
  // Failure links and outputs in breadth-first order (a node's failure
  // target is shallower, so it is complete when the node is reached).
  std::deque<int32_t> queue;
  for (const Edge& e : std::span(edges_).subspan(0, nodes_[0].num_edges)) {
    nodes_[e.to].fail = 0;
    nodes_[e.to].out = terminal[e.to] ? nodes_[e.to].depth : 0;
    queue.push_back(e.to);
  }
  while (!queue.empty()) {
    const int32_t u = queue.front();
    queue.pop_front();
    const Node& node = nodes_[u];
    for (uint32_t i = node.first_edge; i < node.first_edge + node.num_edges; ++i) {
      const Edge e = edges_[i];
      Node& v = nodes_[e.to];
      v.fail = Step(nodes_[u].fail, e.byte);
      v.out = terminal[e.to] ? v.depth : nodes_[v.fail].out;
      queue.push_back(e.to);
    }
  }
}

int32_t StopMatcher::Child(int32_t node, uint8_t byte) const {
  const Node& n = nodes_[node];
  const auto begin = edges_.begin() + n.first_edge;
  const auto end = begin + n.num_edges;
  const auto it =
      std::lower_bound(begin, end, byte, [](const Edge& e, uint8_t b) { return e.byte < b; });
  return it != end && it->byte == byte ? it->to : -1;
}

int32_t StopMatcher::Step(int32_t node, uint8_t byte) const {
  while (node != 0) {
    if (const int32_t c = Child(node, byte); c >= 0) return c;
    node = nodes_[node].fail;
  }
  return root_[byte];
}

std::optional<StopMatcher::Match> StopMatcher::Feed(std::string_view bytes) {
  if (match_.has_value() || empty()) {
    if (!match_.has_value()) offset_ += static_cast<int64_t>(bytes.size());
    return match_;
  }
  for (const char c : bytes) {
    state_ = Step(state_, static_cast<uint8_t>(c));
    ++offset_;
    if (const int32_t out = nodes_[state_].out; out > 0) {
      match_ = Match{.begin = offset_ - out, .end = offset_};
      return match_;
    }
  }
  return std::nullopt;
}

int64_t StopMatcher::HeldBytes() const { return nodes_[state_].depth; }

}  // namespace hc
