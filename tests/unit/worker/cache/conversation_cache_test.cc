#include "worker/cache/conversation_cache.h"

#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/worker/cache/cache_test_util.h"

namespace hc::cache {
namespace {

using testing::FillKvRows;
using testing::FillSlot;
using testing::MakeSmallMemory;
using testing::SequenceChecksum;
using testing::SlotChecksum;
using testing::Stamp;

class ConversationCacheTest : public ::testing::Test {
 protected:
  void Init(int num_blocks, int num_slots, std::unique_ptr<EvictionPolicy> policy = nullptr) {
    mem_ = MakeSmallMemory({.num_blocks = num_blocks, .block_size = 4, .num_slots = num_slots});
    cache_ = ConversationCache::Create({.memory = mem_.get(), .eviction_policy = std::move(policy)})
                 .value();
  }
  void SetUp() override { Init(16, 6); }

  // Runs a fresh turn of num_tokens tokens and commits it as round 1.
  RoundStamp CommitFresh(const ConversationKey& key, int64_t num_tokens, uint64_t hash = 11) {
    const AttachResult a = cache_->AttachFresh(key).value();
    EXPECT_TRUE(cache_->Append(a.request, num_tokens).ok());
    Write(a.request);
    const RoundStamp s = Stamp(1, num_tokens, hash);
    EXPECT_TRUE(cache_->Commit(a.request, s).ok());
    return s;
  }

  // What the model does: writes every row the request owns and its state.
  void Write(RequestId r) {
    std::span<const int32_t> table = cache_->BlockTable(r);
    const int64_t shared = cache_->NumComputedTokens(r) / 4;
    for (size_t i = shared; i < table.size(); ++i) FillKvRows(*mem_, table[i], 0, 4, rng_);
    FillSlot(*mem_, cache_->MambaSlot(r), rng_);
  }

  uint64_t CommittedSum(const ConversationKey& key) {
    const ConversationSnapshot s = cache_->Inspect(key).value();
    return SequenceChecksum(*mem_, s.blocks, s.round.num_tokens) ^
           SlotChecksum(*mem_, s.mamba_slot);
  }

  std::mt19937_64 rng_{3};
  std::unique_ptr<runtime::BackendCacheMemory> mem_;
  std::unique_ptr<ConversationCache> cache_;
  const ConversationKey a_{"salt1", "a"};
  const ConversationKey b_{"salt1", "b"};
  const ConversationKey c_{"salt1", "c"};
};

TEST_F(ConversationCacheTest, LookupIsHitOnlyWhenRoundLengthAndHashAllMatch) {
  EXPECT_EQ(cache_->Lookup(a_, Stamp(1, 6, 11)), LookupResult::kMiss);
  const RoundStamp s = CommitFresh(a_, 6, 11);
  EXPECT_EQ(cache_->Lookup(a_, s), LookupResult::kHit);
  EXPECT_EQ(cache_->Lookup(a_, Stamp(2, 6, 11)), LookupResult::kStale);
  EXPECT_EQ(cache_->Lookup(a_, Stamp(1, 7, 11)), LookupResult::kStale);
  EXPECT_EQ(cache_->Lookup(a_, Stamp(1, 6, 12)), LookupResult::kStale);
  const CacheCounters c = cache_->Counters();
  EXPECT_EQ(c.lookups_hit, 1);
  EXPECT_EQ(c.lookups_stale, 3);
  EXPECT_EQ(c.lookups_miss, 1);
}

TEST_F(ConversationCacheTest, AttachStartsAtTheCommittedLengthWithCopiesOfTailAndState) {
  const RoundStamp s = CommitFresh(a_, 6);
  const uint64_t sum = CommittedSum(a_);
  const ConversationSnapshot snap = cache_->Inspect(a_).value();
  EXPECT_EQ(snap.tail_fill, 2);
  const AttachResult r = cache_->Attach(a_, s).value();
  EXPECT_EQ(r.num_computed_tokens, 6);
  EXPECT_EQ(cache_->NumTokens(r.request), 6);
  std::span<const int32_t> table = cache_->BlockTable(r.request);
  ASSERT_EQ(table.size(), 2u);
  EXPECT_EQ(table[0], snap.blocks[0]);
  EXPECT_NE(table[1], snap.blocks[1]);
  EXPECT_NE(cache_->MambaSlot(r.request), snap.mamba_slot);
  EXPECT_EQ(SequenceChecksum(*mem_, table, 6) ^ SlotChecksum(*mem_, cache_->MambaSlot(r.request)),
            sum);
  const CacheCounters c = cache_->Counters();
  EXPECT_EQ(c.kv_cow_copies, 1);
  EXPECT_EQ(c.mamba_cow_copies, 1);
  EXPECT_TRUE(cache_->Inspect(a_)->attached);
}

TEST_F(ConversationCacheTest, AttachRefusesMissingStaleAndBusyConversations) {
  EXPECT_EQ(cache_->Attach(a_, Stamp(1, 6, 11)).status().code(), absl::StatusCode::kNotFound);
  const RoundStamp s = CommitFresh(a_, 6, 11);
  EXPECT_EQ(cache_->Attach(a_, Stamp(1, 6, 99)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  const AttachResult r = cache_->Attach(a_, s).value();
  EXPECT_EQ(cache_->Attach(a_, s).status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(cache_->AttachFresh(a_).status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(cache_->Counters().running_requests, 1);
  ASSERT_TRUE(cache_->Discard(r.request).ok());
}

TEST_F(ConversationCacheTest, CommitPublishesTheTurnAndTheNextTurnHits) {
  const RoundStamp s1 = CommitFresh(a_, 6);
  const AttachResult r = cache_->Attach(a_, s1).value();
  ASSERT_TRUE(cache_->Append(r.request, 5).ok());
  Write(r.request);
  const uint64_t turn_sum = SequenceChecksum(*mem_, cache_->BlockTable(r.request), 11) ^
                            SlotChecksum(*mem_, cache_->MambaSlot(r.request));
  const RoundStamp s2 = Stamp(2, 11, 22);
  ASSERT_TRUE(cache_->Commit(r.request, s2).ok());
  EXPECT_EQ(cache_->Lookup(a_, s1), LookupResult::kStale);
  EXPECT_EQ(cache_->Lookup(a_, s2), LookupResult::kHit);
  EXPECT_EQ(CommittedSum(a_), turn_sum);
  const CacheCounters c = cache_->Counters();
  EXPECT_EQ(c.kv_blocks_committed, 3);
  EXPECT_EQ(c.kv_blocks_active, 0);
  EXPECT_EQ(c.kv_blocks_free, 13);
  EXPECT_EQ(c.mamba_slots_committed, 1);
  EXPECT_EQ(c.mamba_slots_free, 5);
  EXPECT_EQ(c.running_requests, 0);
}

TEST_F(ConversationCacheTest, DiscardLeavesThePreviousCommittedStateIntact) {
  const RoundStamp s = CommitFresh(a_, 7);
  const uint64_t sum = CommittedSum(a_);
  const AttachResult r = cache_->Attach(a_, s).value();
  ASSERT_TRUE(cache_->Append(r.request, 9).ok());
  Write(r.request);
  EXPECT_EQ(cache_->Counters().kv_blocks_active, 3);  // tail copy + 2 grown
  ASSERT_TRUE(cache_->Discard(r.request).ok());
  EXPECT_EQ(cache_->Lookup(a_, s), LookupResult::kHit);
  EXPECT_EQ(CommittedSum(a_), sum);
  EXPECT_EQ(cache_->Counters().kv_blocks_active, 0);
  EXPECT_EQ(cache_->Counters().mamba_slots_active, 0);
  EXPECT_EQ(cache_->Discard(r.request).code(), absl::StatusCode::kNotFound);
}

TEST_F(ConversationCacheTest, InvalidCommitDiscardsTheTurnAndKeepsTheOldState) {
  const RoundStamp s = CommitFresh(a_, 6);
  const uint64_t sum = CommittedSum(a_);
  AttachResult r = cache_->Attach(a_, s).value();
  ASSERT_TRUE(cache_->Append(r.request, 2).ok());
  EXPECT_EQ(cache_->Commit(r.request, Stamp(2, 9, 5)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache_->Counters().running_requests, 0);
  EXPECT_EQ(cache_->Lookup(a_, s), LookupResult::kHit);
  EXPECT_EQ(CommittedSum(a_), sum);
  r = cache_->Attach(a_, s).value();
  EXPECT_EQ(cache_->Commit(r.request, Stamp(1, 6, 5)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache_->Lookup(a_, s), LookupResult::kHit);
  EXPECT_EQ(cache_->Counters().kv_blocks_active, 0);
}

TEST_F(ConversationCacheTest, CommitBaseKeepsTheStartingStateUnderTheNewRound) {
  const RoundStamp s1 = CommitFresh(a_, 6, 11);
  const uint64_t sum = CommittedSum(a_);
  const AttachResult r = cache_->Attach(a_, s1).value();
  ASSERT_TRUE(cache_->Append(r.request, 5).ok());
  Write(r.request);  // the turn's state moves past the base
  const absl::StatusOr<RoundStamp> kept = cache_->CommitBase(r.request, 2);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(*kept, Stamp(2, 6, 11));
  EXPECT_EQ(cache_->Lookup(a_, s1), LookupResult::kStale);
  EXPECT_EQ(cache_->Lookup(a_, *kept), LookupResult::kHit);
  EXPECT_EQ(CommittedSum(a_), sum);  // the base's memory, untouched
  const CacheCounters c = cache_->Counters();
  EXPECT_EQ(c.running_requests, 0);
  EXPECT_EQ(c.kv_blocks_active, 0);
  EXPECT_EQ(c.mamba_slots_active, 0);
  EXPECT_EQ(c.kv_blocks_committed, 2);
  EXPECT_FALSE(cache_->Inspect(a_)->attached);
  // The next turn attaches to it like to any committed state.
  const AttachResult next = cache_->Attach(a_, *kept).value();
  EXPECT_EQ(next.num_computed_tokens, 6);
  ASSERT_TRUE(cache_->Discard(next.request).ok());
}

TEST_F(ConversationCacheTest, CommitBaseOfAFreshRequestLeavesTheKeyEmpty) {
  CommitFresh(a_, 10);  // a stale state, replaced by nothing
  const AttachResult r = cache_->AttachFresh(a_).value();
  ASSERT_TRUE(cache_->Append(r.request, 7).ok());
  Write(r.request);
  const absl::StatusOr<RoundStamp> kept = cache_->CommitBase(r.request, 5);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(*kept, Stamp(5, 0, kEmptyTokenHash));
  EXPECT_FALSE(cache_->Inspect(a_).has_value());
  const CacheCounters c = cache_->Counters();
  EXPECT_EQ(c.conversations, 0);
  EXPECT_EQ(c.kv_blocks_free, 16);
  EXPECT_EQ(c.mamba_slots_free, 6);
}

TEST_F(ConversationCacheTest, CommitBaseRefusesAnOldRoundAndAnUnknownRequest) {
  const RoundStamp s1 = CommitFresh(a_, 6, 11);
  const AttachResult r = cache_->Attach(a_, s1).value();
  EXPECT_EQ(cache_->CommitBase(r.request, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache_->Lookup(a_, s1), LookupResult::kHit);  // unchanged
  EXPECT_EQ(cache_->Counters().running_requests, 0);
  EXPECT_EQ(cache_->CommitBase(r.request, 2).status().code(), absl::StatusCode::kNotFound);
  const AttachResult d = cache_->Attach(a_, s1).value();
  EXPECT_TRUE(cache_->Forget(a_));
  EXPECT_EQ(cache_->CommitBase(d.request, 2).status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(cache_->Counters().conversations, 0);
}

TEST_F(ConversationCacheTest, SaltsAreSeparateNamespaces) {
  const ConversationKey other{"salt2", "a"};
  const RoundStamp s = CommitFresh(a_, 6, 11);
  EXPECT_EQ(cache_->Lookup(other, s), LookupResult::kMiss);
  EXPECT_EQ(cache_->Attach(other, s).status().code(), absl::StatusCode::kNotFound);
  const RoundStamp s_other = CommitFresh(other, 6, 11);
  const ConversationSnapshot mine = cache_->Inspect(a_).value();
  const ConversationSnapshot theirs = cache_->Inspect(other).value();
  for (const BlockId b : mine.blocks) {
    for (const BlockId t : theirs.blocks) EXPECT_NE(b, t);
  }
  EXPECT_NE(mine.mamba_slot, theirs.mamba_slot);
  EXPECT_TRUE(cache_->Forget(other));
  EXPECT_EQ(cache_->Lookup(a_, s), LookupResult::kHit);
  EXPECT_EQ(cache_->Lookup(other, s_other), LookupResult::kMiss);
}

TEST_F(ConversationCacheTest, FreshCommitReplacesAStaleState) {
  CommitFresh(a_, 10);
  EXPECT_EQ(cache_->Lookup(a_, Stamp(4, 20, 1)), LookupResult::kStale);
  const AttachResult r = cache_->AttachFresh(a_).value();
  EXPECT_EQ(r.num_computed_tokens, 0);
  ASSERT_TRUE(cache_->Append(r.request, 20).ok());
  Write(r.request);
  ASSERT_TRUE(cache_->Commit(r.request, Stamp(4, 20, 1)).ok());
  EXPECT_EQ(cache_->Lookup(a_, Stamp(4, 20, 1)), LookupResult::kHit);
  const CacheCounters c = cache_->Counters();
  EXPECT_EQ(c.conversations, 1);
  EXPECT_EQ(c.kv_blocks_committed, 5);
  EXPECT_EQ(c.kv_blocks_free, 11);
  EXPECT_EQ(c.mamba_slots_committed, 1);
}

TEST_F(ConversationCacheTest, EvictsTheLeastRecentlyUsedIdleStateWhenShort) {
  Init(6, 8);
  const RoundStamp sa = CommitFresh(a_, 8);  // 2 blocks
  const RoundStamp sb = CommitFresh(b_, 8);  // 2 blocks
  // Use a again: b becomes the least recently used.
  ASSERT_TRUE(cache_->Discard(cache_->Attach(a_, sa).value().request).ok());
  const AttachResult r = cache_->AttachFresh(c_).value();
  ASSERT_TRUE(cache_->CanAppend(r.request, 16));
  ASSERT_TRUE(cache_->Append(r.request, 16).ok());  // needs 4 blocks, 2 free
  EXPECT_EQ(cache_->Lookup(b_, sb), LookupResult::kMiss);
  EXPECT_EQ(cache_->Lookup(a_, sa), LookupResult::kHit);
  const CacheCounters c = cache_->Counters();
  EXPECT_EQ(c.conversations_evicted, 1);
  EXPECT_EQ(c.kv_evicted_blocks, 2);
  EXPECT_EQ(c.mamba_evicted_slots, 1);
}

TEST_F(ConversationCacheTest, NeverEvictsAnAttachedStateAndFailsWithoutEvictingWhenShort) {
  Init(6, 8);
  const RoundStamp sa = CommitFresh(a_, 8);
  const RoundStamp sb = CommitFresh(b_, 8);
  const AttachResult ra = cache_->Attach(a_, sa).value();  // pins a
  const AttachResult rc = cache_->AttachFresh(c_).value();
  // Free 2 + evictable b 2 = 4 blocks; 5 are needed.
  EXPECT_FALSE(cache_->CanAppend(rc.request, 20));
  EXPECT_EQ(cache_->Append(rc.request, 20).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cache_->Lookup(b_, sb), LookupResult::kHit);  // nothing was evicted
  EXPECT_EQ(cache_->NumTokens(rc.request), 0);
  EXPECT_TRUE(cache_->CanAppend(rc.request, 16));
  ASSERT_TRUE(cache_->Append(rc.request, 16).ok());
  EXPECT_EQ(cache_->Lookup(b_, sb), LookupResult::kMiss);
  EXPECT_EQ(cache_->Lookup(a_, sa), LookupResult::kHit);
  ASSERT_TRUE(cache_->Discard(ra.request).ok());
  ASSERT_TRUE(cache_->Discard(rc.request).ok());
}

TEST_F(ConversationCacheTest, AttachEvictsForItsTailBlockAndSlotButNotItsOwnState) {
  Init(3, 2);
  const RoundStamp sa = CommitFresh(a_, 6);  // 2 blocks, 1 slot
  const RoundStamp sb = CommitFresh(b_, 1);  // 1 block, 1 slot
  // a needs a tail block and a slot: only evicting b provides them.
  const AttachResult r = cache_->Attach(a_, sa).value();
  EXPECT_EQ(cache_->Lookup(b_, sb), LookupResult::kMiss);
  ASSERT_TRUE(cache_->Discard(r.request).ok());
  // Now a alone cannot be attached to while it is the only thing evictable.
  Init(2, 2);
  const RoundStamp sa2 = CommitFresh(a_, 6);
  EXPECT_EQ(cache_->Attach(a_, sa2).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cache_->Lookup(a_, sa2), LookupResult::kHit);
  EXPECT_FALSE(cache_->Inspect(a_)->attached);
}

TEST_F(ConversationCacheTest, ForgetFreesTheStateAndARunningTurnCannotCommit) {
  const RoundStamp s = CommitFresh(a_, 6);
  EXPECT_TRUE(cache_->Forget(a_));
  EXPECT_FALSE(cache_->Forget(a_));
  EXPECT_EQ(cache_->Counters().kv_blocks_free, 16);
  const RoundStamp s2 = CommitFresh(a_, 6);
  const AttachResult r = cache_->Attach(a_, s2).value();
  ASSERT_TRUE(cache_->Append(r.request, 3).ok());
  EXPECT_TRUE(cache_->Forget(a_));
  // The running turn keeps its own blocks (the formerly shared one included).
  EXPECT_EQ(cache_->Counters().kv_blocks_committed, 0);
  EXPECT_EQ(cache_->Counters().kv_blocks_active, 3);
  EXPECT_EQ(cache_->Commit(r.request, Stamp(2, 9, 1)).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(cache_->Lookup(a_, s), LookupResult::kMiss);
  EXPECT_EQ(cache_->Counters().kv_blocks_free, 16);
  EXPECT_EQ(cache_->Counters().mamba_slots_free, 6);
}

// Evicts the most recently idled state: shows the policy is what decides.
class MruPolicy final : public EvictionPolicy {
 public:
  void Add(const EvictionCandidate& c) override { ids_.push_back(c.id); }
  void Remove(EntryId id) override { std::erase(ids_, id); }
  std::optional<EntryId> PickVictim() override {
    ++picks;
    if (ids_.empty()) return std::nullopt;
    return ids_.back();
  }
  size_t size() const override { return ids_.size(); }
  int picks = 0;

 private:
  std::vector<EntryId> ids_;
};

TEST_F(ConversationCacheTest, UsesThePluggedEvictionPolicy) {
  auto policy = std::make_unique<MruPolicy>();
  MruPolicy* mru = policy.get();
  Init(4, 8, std::move(policy));
  const RoundStamp sa = CommitFresh(a_, 8);
  const RoundStamp sb = CommitFresh(b_, 8);
  const AttachResult r = cache_->AttachFresh(c_).value();
  ASSERT_TRUE(cache_->Append(r.request, 1).ok());
  EXPECT_EQ(mru->picks, 1);
  EXPECT_EQ(cache_->Lookup(b_, sb), LookupResult::kMiss);
  EXPECT_EQ(cache_->Lookup(a_, sa), LookupResult::kHit);
  ASSERT_TRUE(cache_->Discard(r.request).ok());
}

}  // namespace
}  // namespace hc::cache
