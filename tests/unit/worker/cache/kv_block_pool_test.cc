#include "worker/cache/kv_block_pool.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hc::cache {
namespace {

using ::testing::ElementsAre;

TEST(KvBlockPoolTest, AllocatesEveryBlockOnceThenReportsExhaustion) {
  KvBlockPool pool(3);
  std::vector<BlockId> got;
  for (int i = 0; i < 3; ++i) got.push_back(pool.Allocate().value());
  EXPECT_THAT(got, ElementsAre(0, 1, 2));
  EXPECT_FALSE(pool.Allocate().has_value());
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_EQ(pool.num_used(), 3);
  for (const BlockId b : got) EXPECT_EQ(pool.refcount(b), 1);
}

TEST(KvBlockPoolTest, FreedBlocksAreReusedLeastRecentlyFreedFirst) {
  KvBlockPool pool(4);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(pool.Allocate().has_value());
  pool.Unref(2);
  pool.Unref(0);
  pool.Unref(3);
  EXPECT_THAT(pool.FreeQueueForTest(), ElementsAre(2, 0, 3));
  EXPECT_EQ(pool.Allocate().value(), 2);
  EXPECT_EQ(pool.Allocate().value(), 0);
  pool.Unref(2);
  EXPECT_THAT(pool.FreeQueueForTest(), ElementsAre(3, 2));
}

TEST(KvBlockPoolTest, BlockStaysInUseUntilLastReferenceIsDropped) {
  KvBlockPool pool(2);
  const BlockId b = pool.Allocate().value();
  pool.Ref(b);
  pool.Ref(b);
  EXPECT_EQ(pool.refcount(b), 3);
  pool.Unref(b);
  pool.Unref(b);
  EXPECT_EQ(pool.num_free(), 1);
  pool.Unref(b);
  EXPECT_EQ(pool.refcount(b), 0);
  EXPECT_EQ(pool.num_free(), 2);
}

TEST(KvBlockPoolDeathTest, UnrefOfFreeBlockIsAnInvariantFailure) {
  KvBlockPool pool(2);
  EXPECT_DEATH(pool.Unref(1), "Unref on free block 1");
}

}  // namespace
}  // namespace hc::cache
