#include "common/token_hash.h"

#include <vector>

#include "gtest/gtest.h"

namespace hc {
namespace {

TEST(TokenHashTest, ExtendingEqualsHashingTheConcatenation) {
  const std::vector<int> a = {1, 2, 3};
  const std::vector<int> b = {4, 5};
  const std::vector<int> ab = {1, 2, 3, 4, 5};
  EXPECT_EQ(ExtendTokenHash<int>(TokenHash<int>(a), b), TokenHash<int>(ab));
}

TEST(TokenHashTest, OrderLengthAndValuesMatter) {
  const std::vector<uint32_t> x = {1, 2};
  const std::vector<uint32_t> y = {2, 1};
  const std::vector<uint32_t> zero = {0};
  EXPECT_NE(TokenHash<uint32_t>(x), TokenHash<uint32_t>(y));
  EXPECT_NE(TokenHash<uint32_t>(zero), kEmptyTokenHash);  // a 0 token still changes the hash
  EXPECT_EQ(TokenHash<uint32_t>({}), kEmptyTokenHash);
}

}  // namespace
}  // namespace hc
