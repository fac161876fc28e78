// The Mamba state group: fixed-size slots, each holding the conv state and SSM
// state of every Mamba layer on every rank (see runtime/cache_memory.h).
//
// A committed conversation state owns one slot: the terminal state after its
// committed tokens. A running request owns one slot of its own ("ownership of
// the terminal copy"): a copy of the committed slot, or a zeroed slot for a new
// conversation. Publish swaps ownership (the request's slot becomes the
// committed one, no copy) and frees the old committed slot. Committed slots are
// never written.
//
// A snapshot slot holds an exact copy of a request's state at an earlier
// position (Snapshot): the state at the prompt's last message boundary, kept
// so a later turn that rewrites what came after it can resume there. It is
// read-only like a committed slot, and a request can attach to it the same
// way (a copy).
//
// Like FullAttentionGroup, operations that take a slot REQUIRE a free slot
// (SlotsForAttach() of them); callers check num_free() first.
//
// Thread-safety: not thread-safe; the engine thread owns it.
#ifndef HC_WORKER_CACHE_MAMBA_STATE_GROUP_H_
#define HC_WORKER_CACHE_MAMBA_STATE_GROUP_H_

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/runtime/cache_memory.h"

namespace hc::cache {

using runtime::SlotId;

inline constexpr SlotId kNoSlot = -1;

enum class SlotState : uint8_t { kFree = 0, kCommitted = 1, kActive = 2, kSnapshot = 3 };

class MambaStateGroup {
 public:
  // `memory` must outlive the group. All `num_slots` slots start free.
  MambaStateGroup(runtime::CacheMemory* memory, int num_slots);

  MambaStateGroup(const MambaStateGroup&) = delete;
  MambaStateGroup& operator=(const MambaStateGroup&) = delete;

  // Free slots Attach needs (always one: every request owns its state).
  static constexpr int SlotsForAttach() { return 1; }

  // Takes a free slot for a request and fills it with a copy of `committed`,
  // or zeroes it when committed == kNoSlot. REQUIRES: a free slot; committed
  // is kNoSlot, a committed slot or a snapshot slot. Fails only if the memory
  // operation fails, and then changes nothing.
  absl::StatusOr<SlotId> Attach(SlotId committed);

  // Takes a free slot and fills it with a copy of the active slot
  // `request_slot` (the request keeps running on its own slot). REQUIRES: a
  // free slot; request_slot is active. Fails only if the copy fails, and then
  // changes nothing.
  absl::StatusOr<SlotId> Snapshot(SlotId request_slot);

  // Frees a snapshot slot. REQUIRES: a snapshot slot.
  void FreeSnapshot(SlotId snapshot);

  // The request's slot becomes committed; `old` (kNoSlot for none) is freed.
  // REQUIRES: request_slot is active, old is kNoSlot or committed.
  SlotId Publish(SlotId request_slot, SlotId old);

  // Frees a request's slot. REQUIRES: active.
  void Discard(SlotId request_slot);

  // Frees a committed slot (after Forget or Evict). REQUIRES: committed.
  void FreeCommitted(SlotId committed);

  int num_slots() const { return static_cast<int>(state_.size()); }
  int num_free() const { return static_cast<int>(free_.size()); }
  int num_committed() const { return num_committed_; }
  int num_active() const { return num_active_; }
  int num_snapshots() const { return num_snapshots_; }
  SlotState state(SlotId slot) const;
  int64_t cow_copies() const { return cow_copies_; }

 private:
  void Free(SlotId slot);

  runtime::CacheMemory* memory_;
  std::vector<SlotState> state_;
  std::deque<SlotId> free_;  // FIFO: the slot freed last is reused last
  int num_committed_ = 0;
  int num_active_ = 0;
  int num_snapshots_ = 0;
  int64_t cow_copies_ = 0;
};

}  // namespace hc::cache

#endif  // HC_WORKER_CACHE_MAMBA_STATE_GROUP_H_
