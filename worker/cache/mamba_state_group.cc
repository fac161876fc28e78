#include "worker/cache/mamba_state_group.h"

#include "common/logging.h"

namespace hc::cache {

MambaStateGroup::MambaStateGroup(runtime::CacheMemory* memory, int num_slots)
    : memory_(memory), state_(num_slots, SlotState::kFree) {
  HC_CHECK(memory != nullptr) << "MambaStateGroup needs memory";
  HC_CHECK(num_slots >= 0) << "negative slot count " << num_slots;
  for (SlotId s = 0; s < num_slots; ++s) free_.push_back(s);
}

SlotState MambaStateGroup::state(SlotId slot) const {
  HC_CHECK(slot >= 0 && slot < num_slots()) << "slot id out of range: " << slot;
  return state_[slot];
}

absl::StatusOr<SlotId> MambaStateGroup::Attach(SlotId committed) {
  HC_CHECK(committed == kNoSlot || state(committed) == SlotState::kCommitted ||
           state(committed) == SlotState::kSnapshot)
      << "attach to slot " << committed << " which is neither committed nor a snapshot";
  HC_CHECK(!free_.empty()) << "Attach called without a free Mamba slot";
  const SlotId slot = free_.front();
  const absl::Status s =
      committed == kNoSlot ? memory_->ZeroMambaSlot(slot) : memory_->CopyMambaSlot(committed, slot);
  if (!s.ok()) return s;
  free_.pop_front();
  state_[slot] = SlotState::kActive;
  ++num_active_;
  if (committed != kNoSlot) ++cow_copies_;
  return slot;
}

absl::StatusOr<SlotId> MambaStateGroup::Snapshot(SlotId request_slot) {
  HC_CHECK(state(request_slot) == SlotState::kActive)
      << "snapshot of slot " << request_slot << " which no request owns";
  HC_CHECK(!free_.empty()) << "Snapshot called without a free Mamba slot";
  const SlotId slot = free_.front();
  if (absl::Status s = memory_->CopyMambaSlot(request_slot, slot); !s.ok()) return s;
  free_.pop_front();
  state_[slot] = SlotState::kSnapshot;
  ++num_snapshots_;
  return slot;
}

void MambaStateGroup::FreeSnapshot(SlotId snapshot) {
  HC_CHECK(state(snapshot) == SlotState::kSnapshot)
      << "release of slot " << snapshot << " which is not a snapshot";
  --num_snapshots_;
  Free(snapshot);
}

SlotId MambaStateGroup::Publish(SlotId request_slot, SlotId old) {
  HC_CHECK(state(request_slot) == SlotState::kActive)
      << "publish of slot " << request_slot << " which no request owns";
  state_[request_slot] = SlotState::kCommitted;
  --num_active_;
  ++num_committed_;
  if (old != kNoSlot) FreeCommitted(old);
  return request_slot;
}

void MambaStateGroup::Discard(SlotId request_slot) {
  HC_CHECK(state(request_slot) == SlotState::kActive)
      << "discard of slot " << request_slot << " which no request owns";
  --num_active_;
  Free(request_slot);
}

void MambaStateGroup::FreeCommitted(SlotId committed) {
  HC_CHECK(state(committed) == SlotState::kCommitted)
      << "release of slot " << committed << " which is not committed";
  --num_committed_;
  Free(committed);
}

void MambaStateGroup::Free(SlotId slot) {
  state_[slot] = SlotState::kFree;
  free_.push_back(slot);
}

}  // namespace hc::cache
