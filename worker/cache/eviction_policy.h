// Which idle committed conversation state to evict when the cache groups run
// short. The ConversationCache tells the policy when a state becomes
// evictable (idle: no running request is attached to it) and when it stops
// being evictable (attached, replaced, forgotten or evicted); it asks for a
// victim only while at least one state is evictable. A policy never sees a
// state a running request is attached to, so it cannot pick one.
//
// Implementations must make every call O(1) or O(log n) in the number of
// stored states: eviction runs inside attach and append.
//
// Thread-safety: not thread-safe; the engine thread owns it.
#ifndef HC_WORKER_CACHE_EVICTION_POLICY_H_
#define HC_WORKER_CACHE_EVICTION_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

namespace hc::cache {

// Stable id of one stored committed state inside a ConversationCache.
using EntryId = uint64_t;

// What a policy may weigh: how much memory evicting frees and how much
// recompute it would cost.
struct EvictionCandidate {
  EntryId id = 0;
  int64_t num_blocks = 0;  // KV blocks freed by evicting it
  int64_t num_slots = 0;   // Mamba slots freed by evicting it
  int64_t num_tokens = 0;  // committed length (tokens to recompute on a miss)
  uint64_t last_use = 0;   // logical time of its last attach, commit or discard
};

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;

  // The state became evictable. REQUIRES: not already present.
  virtual void Add(const EvictionCandidate& candidate) = 0;
  // The state is no longer evictable. REQUIRES: present.
  virtual void Remove(EntryId id) = 0;
  // The state to evict next, still present (the cache calls Remove on it).
  // Returns nullopt only when empty.
  virtual std::optional<EntryId> PickVictim() = 0;
  virtual size_t size() const = 0;
};

// Least recently used first: the state that became idle longest ago.
std::unique_ptr<EvictionPolicy> NewLruEvictionPolicy();

}  // namespace hc::cache

#endif  // HC_WORKER_CACHE_EVICTION_POLICY_H_
