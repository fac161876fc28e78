#include "worker/cache/full_attention_group.h"

#include <random>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/worker/cache/cache_test_util.h"

namespace hc::cache {
namespace {

using ::testing::ElementsAre;
using testing::FillKvRows;
using testing::MakeSmallMemory;
using testing::SequenceChecksum;

class FullAttentionGroupTest : public ::testing::Test {
 protected:
  FullAttentionGroupTest()
      : mem_(MakeSmallMemory({.num_blocks = 12, .block_size = 4})),
        pool_(12),
        group_(&pool_, mem_.get(), 4) {}

  // A committed state of `num_tokens` tokens with random content, built the
  // way the cache builds one: a fresh request that appends and publishes.
  KvCommittedBlocks MakeCommitted(int64_t num_tokens) {
    KvRequestBlocks req = group_.Attach(nullptr).value();
    group_.Append(&req, num_tokens);
    for (const BlockId b : req.blocks) FillKvRows(*mem_, b, 0, 4, rng_);
    return group_.Publish(std::move(req), {}, num_tokens);
  }

  std::unique_ptr<runtime::BackendCacheMemory> mem_;
  KvBlockPool pool_;
  FullAttentionGroup group_;
  std::mt19937_64 rng_{42};
};

TEST_F(FullAttentionGroupTest, AttachToAlignedStateSharesEveryBlockWithoutCopy) {
  KvCommittedBlocks c = MakeCommitted(8);
  EXPECT_EQ(group_.BlocksForAttach(&c), 0);
  const int free_before = pool_.num_free();
  KvRequestBlocks req = group_.Attach(&c).value();
  EXPECT_EQ(req.blocks, c.blocks);
  EXPECT_EQ(req.num_shared, 2);
  EXPECT_EQ(req.num_tokens, 8);
  EXPECT_EQ(pool_.num_free(), free_before);
  EXPECT_EQ(group_.cow_copies(), 0);
  for (const BlockId b : c.blocks) EXPECT_EQ(pool_.refcount(b), 2);
}

TEST_F(FullAttentionGroupTest, TailCopyEqualsCommittedTailAndWritesToItLeaveTheOriginal) {
  KvCommittedBlocks c = MakeCommitted(10);  // blocks: full, full, tail of 2 rows
  ASSERT_EQ(c.blocks.size(), 3u);
  EXPECT_EQ(group_.BlocksForAttach(&c), 1);
  const uint64_t committed_sum = SequenceChecksum(*mem_, c.blocks, 10);

  KvRequestBlocks req = group_.Attach(&c).value();
  ASSERT_EQ(req.blocks.size(), 3u);
  EXPECT_EQ(req.blocks[0], c.blocks[0]);
  EXPECT_EQ(req.blocks[1], c.blocks[1]);
  EXPECT_NE(req.blocks[2], c.blocks[2]);
  EXPECT_EQ(req.num_shared, 2);
  EXPECT_EQ(group_.cow_copies(), 1);
  EXPECT_EQ(pool_.refcount(c.blocks[0]), 2);
  EXPECT_EQ(pool_.refcount(c.blocks[2]), 1);
  EXPECT_EQ(pool_.refcount(req.blocks[2]), 1);
  // The copy holds exactly the committed tail rows.
  EXPECT_EQ(SequenceChecksum(*mem_, req.blocks, 10), committed_sum);

  // The model writes the request's next rows into its copy, and even scribbles
  // over the copied rows: the committed state must not change.
  group_.Append(&req, 5);
  FillKvRows(*mem_, req.blocks[2], 0, 4, rng_);
  FillKvRows(*mem_, req.blocks[3], 0, 4, rng_);
  EXPECT_EQ(SequenceChecksum(*mem_, c.blocks, 10), committed_sum);
  EXPECT_NE(SequenceChecksum(*mem_, req.blocks, 10), committed_sum);
}

TEST_F(FullAttentionGroupTest, AppendAllocatesOnlyAtBlockBoundaries) {
  KvRequestBlocks req = group_.Attach(nullptr).value();
  EXPECT_EQ(group_.BlocksForAppend(req, 0), 0);
  EXPECT_EQ(group_.BlocksForAppend(req, 1), 1);
  EXPECT_EQ(group_.BlocksForAppend(req, 9), 3);
  group_.Append(&req, 3);
  EXPECT_EQ(req.blocks.size(), 1u);
  EXPECT_EQ(group_.BlocksForAppend(req, 1), 0);
  group_.Append(&req, 1);
  EXPECT_EQ(req.blocks.size(), 1u);
  group_.Append(&req, 1);
  EXPECT_EQ(req.blocks.size(), 2u);
  EXPECT_EQ(req.num_tokens, 5);
  EXPECT_EQ(pool_.num_free(), 10);
}

TEST_F(FullAttentionGroupTest, PublishMakesRequestBlocksCommittedAndReleasesOldState) {
  KvCommittedBlocks old = MakeCommitted(6);  // blocks A (full), B (tail of 2)
  const BlockId a = old.blocks[0];
  const BlockId old_tail = old.blocks[1];
  KvRequestBlocks req = group_.Attach(&old).value();
  group_.Append(&req, 5);  // 11 tokens: A, tail copy, new
  ASSERT_EQ(req.blocks.size(), 3u);
  const BlockId copy = req.blocks[1];
  const BlockId grown = req.blocks[2];
  const uint64_t sum = SequenceChecksum(*mem_, req.blocks, 11);

  KvCommittedBlocks now = group_.Publish(std::move(req), std::move(old), 11);
  EXPECT_THAT(now.blocks, ElementsAre(a, copy, grown));
  EXPECT_EQ(now.num_tokens, 11);
  EXPECT_EQ(pool_.refcount(a), 1);
  EXPECT_EQ(pool_.refcount(copy), 1);
  EXPECT_EQ(pool_.refcount(old_tail), 0);
  EXPECT_EQ(group_.num_committed_blocks(), 3);
  EXPECT_EQ(pool_.num_used(), 3);
  EXPECT_EQ(SequenceChecksum(*mem_, now.blocks, 11), sum);  // no data moved
}

TEST_F(FullAttentionGroupTest, PublishShorterThanReservedFreesBlocksPastTheCommittedLength) {
  KvRequestBlocks req = group_.Attach(nullptr).value();
  group_.Append(&req, 12);
  const BlockId last = req.blocks[2];
  KvCommittedBlocks c = group_.Publish(std::move(req), {}, 5);
  EXPECT_EQ(c.blocks.size(), 2u);
  EXPECT_EQ(pool_.refcount(last), 0);
  EXPECT_EQ(pool_.num_used(), 2);
}

TEST_F(FullAttentionGroupTest, DiscardReturnsEveryReferenceAndKeepsTheCommittedState) {
  KvCommittedBlocks c = MakeCommitted(7);
  const uint64_t sum = SequenceChecksum(*mem_, c.blocks, 7);
  const int used = pool_.num_used();
  KvRequestBlocks req = group_.Attach(&c).value();
  group_.Append(&req, 9);
  for (size_t i = req.num_shared; i < req.blocks.size(); ++i) {
    FillKvRows(*mem_, req.blocks[i], 0, 4, rng_);
  }
  group_.Discard(std::move(req));
  EXPECT_EQ(pool_.num_used(), used);
  for (const BlockId b : c.blocks) EXPECT_EQ(pool_.refcount(b), 1);
  EXPECT_EQ(SequenceChecksum(*mem_, c.blocks, 7), sum);
  group_.FreeCommitted(std::move(c));
  EXPECT_EQ(pool_.num_used(), 0);
  EXPECT_EQ(group_.num_committed_blocks(), 0);
}

}  // namespace
}  // namespace hc::cache
