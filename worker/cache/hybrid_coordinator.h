// The hybrid coordinator: one composite over both cache groups of a hybrid
// model (full-attention KV blocks and Mamba state slots). Every request and
// every committed conversation state has a part in each group; the coordinator
// forwards attach / append / publish / discard / free-committed to both and combines
// the results.
//
// Each operation that allocates first prepares (computes what both groups
// need and checks it is free) and only then applies, so when either group is
// short the call returns RESOURCE_EXHAUSTED and neither group has changed.
// Eviction is not done here: the ConversationCache frees memory first, using
// NeedFor*() and Fits().
//
// Thread-safety: not thread-safe; the engine thread owns it.
#ifndef HC_WORKER_CACHE_HYBRID_COORDINATOR_H_
#define HC_WORKER_CACHE_HYBRID_COORDINATOR_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/cache/full_attention_group.h"
#include "worker/cache/kv_block_pool.h"
#include "worker/cache/mamba_state_group.h"
#include "worker/runtime/cache_memory.h"

namespace hc::cache {

// A committed conversation state across both groups.
struct HybridCommitted {
  KvCommittedBlocks kv;
  SlotId slot = kNoSlot;
};

// What one running request holds across both groups.
struct HybridRequest {
  KvRequestBlocks kv;
  SlotId slot = kNoSlot;
};

// Free memory an operation needs, per group.
struct ResourceNeed {
  int64_t blocks = 0;
  int64_t slots = 0;
};

class HybridCoordinator {
 public:
  // Sizes both groups from memory->kv_layout() (num_blocks, block_size) and
  // memory->mamba_layout() (num_slots). `memory` must outlive the coordinator.
  explicit HybridCoordinator(runtime::CacheMemory* memory);

  HybridCoordinator(const HybridCoordinator&) = delete;
  HybridCoordinator& operator=(const HybridCoordinator&) = delete;

  // Prepare: what Attach / Append would allocate. No side effects.
  ResourceNeed NeedForAttach(const HybridCommitted* committed) const;
  ResourceNeed NeedForAppend(const HybridRequest& req, int64_t num_new_tokens) const;
  // Whether both groups have `need` free right now.
  bool Fits(const ResourceNeed& need) const;

  // Starts a request at the end of `committed` (null: a fresh request with no
  // history and a zeroed Mamba state). RESOURCE_EXHAUSTED when either group is
  // short; a memory copy error is returned as is. On error nothing changed.
  absl::StatusOr<HybridRequest> Attach(const HybridCommitted* committed);

  // Reserves KV rows for num_new_tokens more tokens (the Mamba state has a
  // fixed size, so that group needs nothing). RESOURCE_EXHAUSTED when short,
  // INVALID_ARGUMENT for a negative count; on error nothing changed.
  absl::Status Append(HybridRequest* req, int64_t num_new_tokens);

  // The request becomes the committed state of committed_len tokens; `old`
  // (the state it replaces, default-constructed for none) is freed. No data
  // is copied. REQUIRES: the request's shared prefix <= committed_len <= its
  // reserved tokens, and its Mamba slot holds the state after committed_len
  // tokens.
  HybridCommitted Publish(HybridRequest req, HybridCommitted old, int64_t committed_len);

  // Frees everything the request owns; committed states are untouched.
  void Discard(HybridRequest req);

  // Frees a committed state (after Forget or Evict).
  void FreeCommitted(HybridCommitted committed);

  // Copies the request's Mamba state into a new snapshot slot (Attach can
  // start a request from it, with a prefix of a committed state's blocks).
  // RESOURCE_EXHAUSTED when no slot is free; a copy error as is. On error
  // nothing changed.
  absl::StatusOr<SlotId> TakeSnapshot(const HybridRequest& req);
  // Frees a snapshot slot.
  void FreeSnapshot(SlotId snapshot);

  const FullAttentionGroup& kv() const { return kv_; }
  const MambaStateGroup& mamba() const { return mamba_; }
  const KvBlockPool& pool() const { return pool_; }

 private:
  KvBlockPool pool_;
  FullAttentionGroup kv_;
  MambaStateGroup mamba_;
};

}  // namespace hc::cache

#endif  // HC_WORKER_CACHE_HYBRID_COORDINATOR_H_
