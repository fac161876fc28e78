// Mamba state snapshots in the ConversationCache: taken by a running request,
// published with its commit, resumed from by a later request whose history
// shares the snapshot's tokens, dropped before committed states under slot
// pressure, and never leaked by a failed or discarded turn.
#include <memory>
#include <random>
#include <span>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/worker/cache/cache_test_util.h"
#include "worker/cache/conversation_cache.h"

namespace hc::cache {
namespace {

using testing::FillKvRows;
using testing::FillSlot;
using testing::MakeSmallMemory;
using testing::SequenceChecksum;
using testing::SlotChecksum;
using testing::Stamp;

// Conversation tokens: position i holds token 100 + i.
std::vector<int32_t> Tokens(int n, int32_t first = 100) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = first + i;
  return t;
}

uint64_t HashOf(int n) { return TokenHash<int32_t>(Tokens(n)); }

class SnapshotTest : public ::testing::Test {
 protected:
  void Init(int num_blocks, int num_slots) {
    mem_ = MakeSmallMemory({.num_blocks = num_blocks, .block_size = 4, .num_slots = num_slots});
    cache_ = ConversationCache::Create({.memory = mem_.get()}).value();
  }
  void SetUp() override { Init(32, 8); }

  // What the model does: writes every row the request owns and its state.
  void Write(RequestId r) {
    std::span<const int32_t> table = cache_->BlockTable(r);
    const int64_t shared = cache_->NumComputedTokens(r) / 4;
    for (size_t i = shared; i < table.size(); ++i) FillKvRows(*mem_, table[i], 0, 4, rng_);
    FillSlot(*mem_, cache_->MambaSlot(r), rng_);
  }

  // A fresh turn of `len` tokens that snapshots its state at `at` and
  // commits as round 1. Returns the checksum of KV rows [0, at) plus the
  // state at `at` (what a turn resumed from the snapshot must see).
  uint64_t CommitWithSnapshot(const ConversationKey& key, int64_t len, int64_t at) {
    const AttachResult a = cache_->AttachFresh(key).value();
    EXPECT_TRUE(cache_->Append(a.request, len).ok());
    Write(a.request);
    const uint64_t sum = SequenceChecksum(*mem_, cache_->BlockTable(a.request), at) ^
                         SlotChecksum(*mem_, cache_->MambaSlot(a.request));
    EXPECT_TRUE(cache_->TakeSnapshot(a.request, Stamp(1, at, HashOf(at))).ok());
    FillSlot(*mem_, cache_->MambaSlot(a.request), rng_);  // the state moves on past `at`
    EXPECT_TRUE(cache_->Commit(a.request, Stamp(1, len, HashOf(len))).ok());
    return sum;
  }

  void CommitPlain(const ConversationKey& key, int64_t len) {
    const AttachResult a = cache_->AttachFresh(key).value();
    EXPECT_TRUE(cache_->Append(a.request, len).ok());
    Write(a.request);
    EXPECT_TRUE(cache_->Commit(a.request, Stamp(1, len, HashOf(len))).ok());
  }

  // Every slot is free, committed, or a published snapshot: nothing leaked.
  void ExpectNoActiveSlots() {
    const CacheCounters c = cache_->Counters();
    EXPECT_EQ(c.mamba_slots_active, 0);
    EXPECT_EQ(c.mamba_slots_snapshot, c.snapshots);
    EXPECT_EQ(c.mamba_slots_free + c.mamba_slots_committed + c.mamba_slots_snapshot,
              c.mamba_slots_total);
  }

  std::mt19937_64 rng_{5};
  std::unique_ptr<runtime::BackendCacheMemory> mem_;
  std::unique_ptr<ConversationCache> cache_;
  const ConversationKey a_{"", "a"};
  const ConversationKey b_{"", "b"};
  const ConversationKey c_{"", "c"};
};

TEST_F(SnapshotTest, CommitPublishesTheSnapshotWithTheState) {
  CommitWithSnapshot(a_, 10, 6);
  const ConversationSnapshot s = cache_->Inspect(a_).value();
  ASSERT_TRUE(s.snapshot.has_value());
  EXPECT_EQ(s.snapshot->at, Stamp(1, 6, HashOf(6)));
  EXPECT_NE(s.snapshot->slot, s.mamba_slot);
  const CacheCounters c = cache_->Counters();
  EXPECT_EQ(c.snapshots, 1);
  EXPECT_EQ(c.snapshots_taken, 1);
  EXPECT_EQ(c.mamba_slots_snapshot, 1);
  EXPECT_EQ(c.mamba_slots_committed, 1);
  ExpectNoActiveSlots();
}

TEST_F(SnapshotTest, ResumedRequestSeesExactlyTheKvPrefixAndStateAtTheSnapshot) {
  const uint64_t at_snapshot = CommitWithSnapshot(a_, 10, 6);
  // A rewrite: the first 6 tokens are kept, then different ones.
  std::vector<int32_t> history = Tokens(6);
  history.push_back(7);
  const std::optional<RoundStamp> found = cache_->LookupSnapshot(a_, history);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->num_tokens, 6);
  const AttachResult r = cache_->AttachSnapshot(a_, *found).value();
  EXPECT_EQ(r.num_computed_tokens, 6);
  EXPECT_EQ(cache_->NumTokens(r.request), 6);
  EXPECT_EQ(SequenceChecksum(*mem_, cache_->BlockTable(r.request), 6) ^
                SlotChecksum(*mem_, cache_->MambaSlot(r.request)),
            at_snapshot);
  // The request owns its tail and state: writing them leaves the committed
  // state and the snapshot as they were.
  const ConversationSnapshot before = cache_->Inspect(a_).value();
  const uint64_t committed = SequenceChecksum(*mem_, before.blocks, 10) ^
                             SlotChecksum(*mem_, before.mamba_slot) ^
                             SlotChecksum(*mem_, before.snapshot->slot);
  ASSERT_TRUE(cache_->Append(r.request, 5).ok());
  Write(r.request);
  EXPECT_EQ(SequenceChecksum(*mem_, before.blocks, 10) ^ SlotChecksum(*mem_, before.mamba_slot) ^
                SlotChecksum(*mem_, before.snapshot->slot),
            committed);
  // Commit replaces the state; without a new snapshot the old one is dropped.
  ASSERT_TRUE(cache_->Commit(r.request, Stamp(2, 11, 77)).ok());
  const ConversationSnapshot after = cache_->Inspect(a_).value();
  EXPECT_EQ(after.round, Stamp(2, 11, 77));
  EXPECT_FALSE(after.snapshot.has_value());
  EXPECT_EQ(cache_->Counters().snapshot_hits, 1);
  ExpectNoActiveSlots();
}

TEST_F(SnapshotTest, LookupMissesWhenTheHistoryDoesNotStartWithTheSnapshotTokens) {
  CommitWithSnapshot(a_, 10, 6);
  EXPECT_FALSE(cache_->LookupSnapshot(a_, Tokens(5)).has_value());       // too short
  EXPECT_FALSE(cache_->LookupSnapshot(a_, Tokens(8, 101)).has_value());  // other tokens
  EXPECT_FALSE(cache_->LookupSnapshot(b_, Tokens(8)).has_value());       // other conversation
  EXPECT_TRUE(cache_->LookupSnapshot(a_, Tokens(6)).has_value());        // exactly P
  const CacheCounters c = cache_->Counters();
  EXPECT_EQ(c.snapshot_misses, 3);
  EXPECT_EQ(c.snapshot_hits, 1);
  EXPECT_EQ(cache_->AttachSnapshot(a_, Stamp(1, 5, HashOf(5))).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(cache_->AttachSnapshot(b_, Stamp(1, 6, HashOf(6))).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SnapshotTest, DiscardDropsThePendingSnapshotAndKeepsThePublishedOne) {
  CommitWithSnapshot(a_, 10, 6);
  const AttachResult r = cache_->Attach(a_, Stamp(1, 10, HashOf(10))).value();
  ASSERT_TRUE(cache_->Append(r.request, 6).ok());
  Write(r.request);
  ASSERT_TRUE(cache_->TakeSnapshot(r.request, Stamp(2, 14, HashOf(14))).ok());
  EXPECT_EQ(cache_->Counters().mamba_slots_snapshot, 2);
  ASSERT_TRUE(cache_->Discard(r.request).ok());
  const ConversationSnapshot s = cache_->Inspect(a_).value();
  EXPECT_EQ(s.round, Stamp(1, 10, HashOf(10)));
  ASSERT_TRUE(s.snapshot.has_value());
  EXPECT_EQ(s.snapshot->at.num_tokens, 6);
  ExpectNoActiveSlots();
}

TEST_F(SnapshotTest, FailedCommitPublishesNeitherStateNorSnapshot) {
  CommitWithSnapshot(a_, 10, 6);
  const AttachResult r = cache_->Attach(a_, Stamp(1, 10, HashOf(10))).value();
  ASSERT_TRUE(cache_->Append(r.request, 6).ok());
  ASSERT_TRUE(cache_->TakeSnapshot(r.request, Stamp(2, 14, HashOf(14))).ok());
  // Past the reserved rows: INVALID_ARGUMENT, and the request is discarded.
  EXPECT_EQ(cache_->Commit(r.request, Stamp(2, 17, 1)).code(), absl::StatusCode::kInvalidArgument);
  const ConversationSnapshot s = cache_->Inspect(a_).value();
  EXPECT_EQ(s.round.round, 1u);
  EXPECT_EQ(s.snapshot->at.num_tokens, 6);
  ExpectNoActiveSlots();
  // Forgotten while running: ABORTED, nothing of the key stays.
  const AttachResult r2 = cache_->Attach(a_, Stamp(1, 10, HashOf(10))).value();
  ASSERT_TRUE(cache_->Append(r2.request, 6).ok());
  ASSERT_TRUE(cache_->TakeSnapshot(r2.request, Stamp(2, 14, HashOf(14))).ok());
  EXPECT_TRUE(cache_->Forget(a_));
  EXPECT_EQ(cache_->Commit(r2.request, Stamp(2, 16, 1)).code(), absl::StatusCode::kAborted);
  EXPECT_FALSE(cache_->Inspect(a_).has_value());
  EXPECT_EQ(cache_->Counters().mamba_slots_free, cache_->Counters().mamba_slots_total);
}

TEST_F(SnapshotTest, SnapshotsAreDroppedBeforeAnyCommittedStateIsEvicted) {
  Init(32, 4);
  CommitWithSnapshot(a_, 10, 6);  // 2 slots, oldest
  CommitWithSnapshot(b_, 10, 6);  // 2 slots
  const AttachResult r = cache_->AttachFresh(c_).value();
  CacheCounters c = cache_->Counters();
  EXPECT_EQ(c.snapshots_evicted, 1);
  EXPECT_EQ(c.conversations_evicted, 0);
  EXPECT_FALSE(cache_->Inspect(a_)->snapshot.has_value());
  EXPECT_TRUE(cache_->Inspect(b_)->snapshot.has_value());
  // With no snapshot left to drop, committed states go (LRU: a).
  const AttachResult r2 = cache_->AttachFresh({"", "d"}).value();
  c = cache_->Counters();
  EXPECT_EQ(c.snapshots_evicted, 2);
  EXPECT_EQ(c.conversations_evicted, 0);
  ASSERT_TRUE(cache_->Discard(r.request).ok());
  ASSERT_TRUE(cache_->Discard(r2.request).ok());
}

TEST_F(SnapshotTest, TakingASnapshotNeverEvictsACommittedState) {
  Init(32, 3);
  CommitPlain(a_, 8);
  CommitPlain(b_, 8);
  const AttachResult r = cache_->AttachFresh(c_).value();
  ASSERT_TRUE(cache_->Append(r.request, 8).ok());
  EXPECT_EQ(cache_->TakeSnapshot(r.request, Stamp(1, 4, HashOf(4))).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cache_->Counters().snapshots_skipped, 1);
  EXPECT_TRUE(cache_->Inspect(a_).has_value());
  EXPECT_TRUE(cache_->Inspect(b_).has_value());
  // The turn itself still commits, without a snapshot.
  ASSERT_TRUE(cache_->Commit(r.request, Stamp(1, 8, HashOf(8))).ok());
  EXPECT_FALSE(cache_->Inspect(c_)->snapshot.has_value());
}

TEST_F(SnapshotTest, AttachingFromASnapshotEvictsOthersRatherThanThatSnapshot) {
  Init(32, 3);
  const uint64_t at_snapshot = CommitWithSnapshot(a_, 10, 6);  // 2 slots
  CommitPlain(b_, 8);                                          // the third
  const AttachResult r = cache_->AttachSnapshot(a_, Stamp(1, 6, HashOf(6))).value();
  EXPECT_FALSE(cache_->Inspect(b_).has_value());
  EXPECT_EQ(cache_->Counters().conversations_evicted, 1);
  EXPECT_EQ(SequenceChecksum(*mem_, cache_->BlockTable(r.request), 6) ^
                SlotChecksum(*mem_, cache_->MambaSlot(r.request)),
            at_snapshot);
  ASSERT_TRUE(cache_->Discard(r.request).ok());
  ExpectNoActiveSlots();
}

TEST_F(SnapshotTest, CommitBaseOfAResumedRequestLeavesTheConversationEmpty) {
  CommitWithSnapshot(a_, 10, 6);
  const AttachResult r = cache_->AttachSnapshot(a_, Stamp(1, 6, HashOf(6))).value();
  ASSERT_TRUE(cache_->Append(r.request, 4).ok());
  // The committed state at 10 tokens describes replaced tokens, and the
  // snapshot is no committed round: nothing is kept.
  const RoundStamp kept = cache_->CommitBase(r.request, 2).value();
  EXPECT_EQ(kept.num_tokens, 0);
  EXPECT_FALSE(cache_->Inspect(a_).has_value());
  EXPECT_EQ(cache_->Counters().mamba_slots_free, cache_->Counters().mamba_slots_total);
}

TEST_F(SnapshotTest, TakeSnapshotRefusesPositionsOutsideTheRequest) {
  const AttachResult r = cache_->AttachFresh(a_).value();
  ASSERT_TRUE(cache_->Append(r.request, 5).ok());
  EXPECT_EQ(cache_->TakeSnapshot(r.request, Stamp(1, 6, 0)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache_->TakeSnapshot(r.request + 1, Stamp(1, 3, 0)).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(cache_->Counters().mamba_slots_snapshot, 0);
  ASSERT_TRUE(cache_->Discard(r.request).ok());
}

}  // namespace
}  // namespace hc::cache
