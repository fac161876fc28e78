#include "worker/cache/eviction_policy.h"

#include "gtest/gtest.h"

namespace hc::cache {
namespace {

TEST(LruEvictionPolicyTest, PicksTheStateThatBecameIdleFirst) {
  auto lru = NewLruEvictionPolicy();
  EXPECT_FALSE(lru->PickVictim().has_value());
  lru->Add({.id = 7});
  lru->Add({.id = 3});
  lru->Add({.id = 9});
  EXPECT_EQ(lru->PickVictim(), 7u);
  lru->Remove(7);
  EXPECT_EQ(lru->PickVictim(), 3u);
  // Re-adding (the state was used again) moves it to the back.
  lru->Remove(3);
  lru->Add({.id = 3});
  EXPECT_EQ(lru->PickVictim(), 9u);
  EXPECT_EQ(lru->size(), 2u);
}

TEST(LruEvictionPolicyTest, RemovingFromTheMiddleKeepsTheOrder) {
  auto lru = NewLruEvictionPolicy();
  for (EntryId id = 1; id <= 5; ++id) lru->Add({.id = id});
  lru->Remove(3);
  lru->Remove(1);
  EXPECT_EQ(lru->PickVictim(), 2u);
  lru->Remove(2);
  EXPECT_EQ(lru->PickVictim(), 4u);
  lru->Remove(4);
  lru->Remove(5);
  EXPECT_FALSE(lru->PickVictim().has_value());
}

}  // namespace
}  // namespace hc::cache
