#include "worker/cache/hybrid_coordinator.h"

#include <memory>
#include <utility>

#include "gtest/gtest.h"
#include "tests/unit/worker/cache/cache_test_util.h"

namespace hc::cache {
namespace {

using testing::MakeSmallMemory;

// Forwards to host cache memory, but can fail the Mamba slot operations (a
// device error in the second group after the first already allocated).
class FlakyMemory final : public runtime::CacheMemory {
 public:
  explicit FlakyMemory(std::unique_ptr<runtime::BackendCacheMemory> inner)
      : inner_(std::move(inner)) {}
  const runtime::KvLayout& kv_layout() const override { return inner_->kv_layout(); }
  const runtime::MambaLayout& mamba_layout() const override { return inner_->mamba_layout(); }
  int num_ranks() const override { return inner_->num_ranks(); }
  absl::Status CopyKvBlock(BlockId src, BlockId dst, int n) override {
    return inner_->CopyKvBlock(src, dst, n);
  }
  absl::Status CopyMambaSlot(SlotId src, SlotId dst) override {
    if (fail_mamba) return absl::InternalError("injected Mamba copy failure");
    return inner_->CopyMambaSlot(src, dst);
  }
  absl::Status ZeroMambaSlot(SlotId slot) override {
    if (fail_mamba) return absl::InternalError("injected Mamba zero failure");
    return inner_->ZeroMambaSlot(slot);
  }
  void* k(int rank, int layer) override { return inner_->k(rank, layer); }
  void* v(int rank, int layer) override { return inner_->v(rank, layer); }
  float* conv(int rank, int layer) override { return inner_->conv(rank, layer); }
  float* ssm(int rank, int layer) override { return inner_->ssm(rank, layer); }
  bool fail_mamba = false;

 private:
  std::unique_ptr<runtime::BackendCacheMemory> inner_;
};

class HybridCoordinatorTest : public ::testing::Test {
 protected:
  void Init(int num_blocks, int num_slots) {
    mem_ = std::make_unique<FlakyMemory>(
        MakeSmallMemory({.num_blocks = num_blocks, .block_size = 4, .num_slots = num_slots}));
    coord_ = std::make_unique<HybridCoordinator>(mem_.get());
  }

  HybridCommitted MakeCommitted(int64_t num_tokens) {
    HybridRequest req = coord_->Attach(nullptr).value();
    EXPECT_TRUE(coord_->Append(&req, num_tokens).ok());
    return coord_->Publish(std::move(req), {}, num_tokens);
  }

  std::unique_ptr<FlakyMemory> mem_;
  std::unique_ptr<HybridCoordinator> coord_;
};

TEST_F(HybridCoordinatorTest, AttachNeedsTailBlockAndSlot) {
  Init(8, 4);
  HybridCommitted aligned = MakeCommitted(8);
  HybridCommitted tail = MakeCommitted(9);
  EXPECT_EQ(coord_->NeedForAttach(nullptr).blocks, 0);
  EXPECT_EQ(coord_->NeedForAttach(nullptr).slots, 1);
  EXPECT_EQ(coord_->NeedForAttach(&aligned).blocks, 0);
  EXPECT_EQ(coord_->NeedForAttach(&tail).blocks, 1);
  EXPECT_EQ(coord_->NeedForAttach(&tail).slots, 1);
}

TEST_F(HybridCoordinatorTest, AttachWithoutAFreeSlotFailsAndLeavesBothGroupsUnchanged) {
  Init(8, 2);
  HybridCommitted a = MakeCommitted(6);
  HybridCommitted b = MakeCommitted(1);  // takes the last slot
  const auto free_queue = coord_->pool().FreeQueueForTest();
  const int64_t copies = coord_->kv().cow_copies();
  absl::StatusOr<HybridRequest> r = coord_->Attach(&a);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(coord_->pool().FreeQueueForTest(), free_queue);
  EXPECT_EQ(coord_->kv().cow_copies(), copies);
  EXPECT_EQ(coord_->mamba().num_free(), 0);
}

TEST_F(HybridCoordinatorTest, AttachWithoutATailBlockFailsAndLeavesBothGroupsUnchanged) {
  Init(2, 4);
  HybridCommitted a = MakeCommitted(6);  // both blocks
  const int free_slots = coord_->mamba().num_free();
  absl::StatusOr<HybridRequest> r = coord_->Attach(&a);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(coord_->mamba().num_free(), free_slots);
  EXPECT_EQ(coord_->mamba().cow_copies(), 0);
  EXPECT_EQ(coord_->pool().num_free(), 0);
}

TEST_F(HybridCoordinatorTest, FailureInTheMambaGroupRollsBackTheTailCopy) {
  Init(8, 4);
  HybridCommitted a = MakeCommitted(6);
  const auto free_queue = coord_->pool().FreeQueueForTest();
  mem_->fail_mamba = true;
  absl::StatusOr<HybridRequest> r = coord_->Attach(&a);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(coord_->pool().num_free(), static_cast<int>(free_queue.size()));
  EXPECT_EQ(coord_->mamba().num_active(), 0);
  for (const BlockId b : a.kv.blocks) EXPECT_EQ(coord_->pool().refcount(b), 1);
}

TEST_F(HybridCoordinatorTest, AppendShortOfBlocksFailsAndChangesNothing) {
  Init(3, 2);
  HybridRequest req = coord_->Attach(nullptr).value();
  ASSERT_TRUE(coord_->Append(&req, 10).ok());  // 3 blocks
  EXPECT_EQ(coord_->Append(&req, 3).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(req.kv.num_tokens, 10);
  EXPECT_EQ(req.kv.blocks.size(), 3u);
  EXPECT_TRUE(coord_->Append(&req, 2).ok());  // fits the last block
  EXPECT_EQ(coord_->Append(&req, -1).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(HybridCoordinatorTest, PublishAndDiscardReachBothGroups) {
  Init(8, 4);
  HybridCommitted a = MakeCommitted(5);
  HybridRequest r1 = coord_->Attach(&a).value();
  ASSERT_TRUE(coord_->Append(&r1, 4).ok());
  const SlotId r1_slot = r1.slot;
  HybridCommitted a2 = coord_->Publish(std::move(r1), std::move(a), 9);
  EXPECT_EQ(a2.slot, r1_slot);
  EXPECT_EQ(coord_->mamba().num_committed(), 1);
  EXPECT_EQ(coord_->kv().num_committed_blocks(), 3);
  EXPECT_EQ(coord_->pool().num_used(), 3);

  HybridRequest r2 = coord_->Attach(&a2).value();
  coord_->Discard(std::move(r2));
  EXPECT_EQ(coord_->mamba().num_active(), 0);
  EXPECT_EQ(coord_->pool().num_used(), 3);
  coord_->FreeCommitted(std::move(a2));
  EXPECT_EQ(coord_->pool().num_used(), 0);
  EXPECT_EQ(coord_->mamba().num_free(), 4);
}

}  // namespace
}  // namespace hc::cache
