#include "worker/cache/hybrid_coordinator.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace hc::cache {

HybridCoordinator::HybridCoordinator(runtime::CacheMemory* memory)
    : pool_(memory->kv_layout().num_blocks),
      kv_(&pool_, memory, memory->kv_layout().block_size),
      mamba_(memory, memory->mamba_layout().num_slots) {}

ResourceNeed HybridCoordinator::NeedForAttach(const HybridCommitted* committed) const {
  return {.blocks = kv_.BlocksForAttach(committed == nullptr ? nullptr : &committed->kv),
          .slots = MambaStateGroup::SlotsForAttach()};
}

ResourceNeed HybridCoordinator::NeedForAppend(const HybridRequest& req,
                                              int64_t num_new_tokens) const {
  return {.blocks = kv_.BlocksForAppend(req.kv, num_new_tokens), .slots = 0};
}

bool HybridCoordinator::Fits(const ResourceNeed& need) const {
  return need.blocks <= pool_.num_free() && need.slots <= mamba_.num_free();
}

absl::StatusOr<HybridRequest> HybridCoordinator::Attach(const HybridCommitted* committed) {
  const ResourceNeed need = NeedForAttach(committed);
  if (!Fits(need)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("attach needs ", need.blocks, " KV blocks (", pool_.num_free(), " free) and ",
                     need.slots, " Mamba slots (", mamba_.num_free(), " free)"));
  }
  HybridRequest req;
  absl::StatusOr<KvRequestBlocks> kv = kv_.Attach(committed == nullptr ? nullptr : &committed->kv);
  if (!kv.ok()) return kv.status();
  absl::StatusOr<SlotId> slot = mamba_.Attach(committed == nullptr ? kNoSlot : committed->slot);
  if (!slot.ok()) {
    kv_.Discard(*std::move(kv));
    return slot.status();
  }
  req.kv = *std::move(kv);
  req.slot = *slot;
  return req;
}

absl::Status HybridCoordinator::Append(HybridRequest* req, int64_t num_new_tokens) {
  if (num_new_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot append ", num_new_tokens, " tokens"));
  }
  const ResourceNeed need = NeedForAppend(*req, num_new_tokens);
  if (!Fits(need)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("append needs ", need.blocks, " KV blocks, ", pool_.num_free(), " free"));
  }
  kv_.Append(&req->kv, num_new_tokens);
  return absl::OkStatus();
}

HybridCommitted HybridCoordinator::Publish(HybridRequest req, HybridCommitted old,
                                           int64_t committed_len) {
  HybridCommitted out;
  out.kv = kv_.Publish(std::move(req.kv), std::move(old.kv), committed_len);
  out.slot = mamba_.Publish(req.slot, old.slot);
  return out;
}

void HybridCoordinator::Discard(HybridRequest req) {
  kv_.Discard(std::move(req.kv));
  mamba_.Discard(req.slot);
}

void HybridCoordinator::FreeCommitted(HybridCommitted committed) {
  kv_.FreeCommitted(std::move(committed.kv));
  mamba_.FreeCommitted(committed.slot);
}

absl::StatusOr<SlotId> HybridCoordinator::TakeSnapshot(const HybridRequest& req) {
  if (mamba_.num_free() < 1) {
    return absl::ResourceExhaustedError("a snapshot needs a free Mamba slot; none is free");
  }
  return mamba_.Snapshot(req.slot);
}

void HybridCoordinator::FreeSnapshot(SlotId snapshot) { mamba_.FreeSnapshot(snapshot); }

}  // namespace hc::cache
