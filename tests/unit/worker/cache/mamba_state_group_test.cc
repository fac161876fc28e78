#include "worker/cache/mamba_state_group.h"

#include <random>

#include "gtest/gtest.h"
#include "tests/unit/worker/cache/cache_test_util.h"

namespace hc::cache {
namespace {

using testing::FillSlot;
using testing::MakeSmallMemory;
using testing::SlotChecksum;
using testing::SlotIsZero;

class MambaStateGroupTest : public ::testing::Test {
 protected:
  MambaStateGroupTest() : mem_(MakeSmallMemory({.num_slots = 4})), group_(mem_.get(), 4) {
    // Leftover garbage in every slot, as after earlier requests.
    for (SlotId s = 0; s < 4; ++s) FillSlot(*mem_, s, rng_);
  }

  // A committed slot with random content.
  SlotId MakeCommitted() {
    const SlotId s = group_.Attach(kNoSlot).value();
    FillSlot(*mem_, s, rng_);
    return group_.Publish(s, kNoSlot);
  }

  std::mt19937_64 rng_{7};
  std::unique_ptr<runtime::BackendCacheMemory> mem_;
  MambaStateGroup group_;
};

TEST_F(MambaStateGroupTest, FreshAttachGivesAZeroedSlot) {
  const SlotId s = group_.Attach(kNoSlot).value();
  EXPECT_TRUE(SlotIsZero(*mem_, s));
  EXPECT_EQ(group_.state(s), SlotState::kActive);
  EXPECT_EQ(group_.num_active(), 1);
  EXPECT_EQ(group_.num_free(), 3);
  EXPECT_EQ(group_.cow_copies(), 0);
}

TEST_F(MambaStateGroupTest, SnapshotCopiesAnActiveSlotAndCanBeAttachedTo) {
  const SlotId active = group_.Attach(kNoSlot).value();
  FillSlot(*mem_, active, rng_);
  const uint64_t at_snapshot = SlotChecksum(*mem_, active);
  const SlotId snap = group_.Snapshot(active).value();
  EXPECT_EQ(group_.state(snap), SlotState::kSnapshot);
  EXPECT_EQ(group_.num_snapshots(), 1);
  EXPECT_EQ(group_.num_free(), 2);
  FillSlot(*mem_, active, rng_);  // the request moves on; the snapshot does not
  EXPECT_EQ(SlotChecksum(*mem_, snap), at_snapshot);
  const SlotId resumed = group_.Attach(snap).value();
  EXPECT_EQ(SlotChecksum(*mem_, resumed), at_snapshot);
  group_.Discard(resumed);
  group_.Discard(active);
  group_.FreeSnapshot(snap);
  EXPECT_EQ(group_.num_snapshots(), 0);
  EXPECT_EQ(group_.num_free(), 4);
}

TEST_F(MambaStateGroupTest, AttachCopiesTheCommittedStateIntoAnOwnedSlot) {
  const SlotId committed = MakeCommitted();
  const uint64_t sum = SlotChecksum(*mem_, committed);
  const SlotId owned = group_.Attach(committed).value();
  EXPECT_NE(owned, committed);
  EXPECT_EQ(SlotChecksum(*mem_, owned), sum);
  EXPECT_EQ(group_.cow_copies(), 1);
  FillSlot(*mem_, owned, rng_);  // the model advances the request's state
  EXPECT_EQ(SlotChecksum(*mem_, committed), sum);
}

TEST_F(MambaStateGroupTest, PublishTakesTheRequestSlotWithoutCopyAndFreesTheOldOne) {
  const SlotId old = MakeCommitted();
  const SlotId owned = group_.Attach(old).value();
  FillSlot(*mem_, owned, rng_);
  const uint64_t sum = SlotChecksum(*mem_, owned);
  const int64_t copies = group_.cow_copies();
  EXPECT_EQ(group_.Publish(owned, old), owned);
  EXPECT_EQ(group_.cow_copies(), copies);
  EXPECT_EQ(SlotChecksum(*mem_, owned), sum);
  EXPECT_EQ(group_.state(owned), SlotState::kCommitted);
  EXPECT_EQ(group_.state(old), SlotState::kFree);
  EXPECT_EQ(group_.num_committed(), 1);
  EXPECT_EQ(group_.num_active(), 0);
  EXPECT_EQ(group_.num_free(), 3);
}

TEST_F(MambaStateGroupTest, DiscardFreesOnlyTheRequestSlot) {
  const SlotId committed = MakeCommitted();
  const uint64_t sum = SlotChecksum(*mem_, committed);
  const SlotId owned = group_.Attach(committed).value();
  FillSlot(*mem_, owned, rng_);
  group_.Discard(owned);
  EXPECT_EQ(group_.state(owned), SlotState::kFree);
  EXPECT_EQ(group_.state(committed), SlotState::kCommitted);
  EXPECT_EQ(SlotChecksum(*mem_, committed), sum);
  group_.FreeCommitted(committed);
  EXPECT_EQ(group_.num_free(), 4);
  EXPECT_EQ(group_.num_committed(), 0);
}

}  // namespace
}  // namespace hc::cache
