#include "worker/cache/eviction_policy.h"

#include <list>

#include "absl/container/flat_hash_map.h"
#include "common/logging.h"

namespace hc::cache {
namespace {

// Idle states in the order they became idle; last_use only grows, so the
// front is the least recently used.
class LruEvictionPolicy final : public EvictionPolicy {
 public:
  void Add(const EvictionCandidate& candidate) override {
    auto [it, inserted] = index_.try_emplace(candidate.id);
    HC_CHECK(inserted) << "entry " << candidate.id << " added to the LRU twice";
    it->second = order_.insert(order_.end(), candidate.id);
  }

  void Remove(EntryId id) override {
    auto it = index_.find(id);
    HC_CHECK(it != index_.end()) << "entry " << id << " removed but not in the LRU";
    order_.erase(it->second);
    index_.erase(it);
  }

  std::optional<EntryId> PickVictim() override {
    if (order_.empty()) return std::nullopt;
    return order_.front();
  }

  size_t size() const override { return order_.size(); }

 private:
  std::list<EntryId> order_;
  absl::flat_hash_map<EntryId, std::list<EntryId>::iterator> index_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> NewLruEvictionPolicy() {
  return std::make_unique<LruEvictionPolicy>();
}

}  // namespace hc::cache
