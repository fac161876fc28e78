#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "worker/runtime/communicator.h"

namespace hc::runtime {
namespace {

// Runs body(comm) on one thread per rank.
void RunRanks(int size, const std::function<void(Communicator&)>& body) {
  auto comms = CreateThreadCommunicators(size);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) threads.emplace_back([&, r] { body(*comms[r]); });
  for (auto& t : threads) t.join();
}

std::vector<float> RankData(int rank, int iter, size_t count) {
  std::mt19937 rng(1000 * rank + iter);
  std::uniform_real_distribution<float> d(-1e3f, 1e3f);
  std::vector<float> v(count);
  for (float& x : v) x = d(rng);
  return v;
}

class ThreadCommunicatorTest : public ::testing::TestWithParam<int> {};

TEST_P(ThreadCommunicatorTest, AllReduceSumIsRankOrderedSumAndBitwiseEqualOnAllRanks) {
  const int size = GetParam();
  const std::vector<size_t> counts = {0, 1, 3, 7, 64, 1001};
  std::vector<std::vector<std::vector<float>>> results(size);
  RunRanks(size, [&](Communicator& c) {
    EXPECT_EQ(c.size(), size);
    for (size_t it = 0; it < counts.size(); ++it) {
      auto data = RankData(c.rank(), it, counts[it]);
      ASSERT_TRUE(c.AllReduceSum(data.data(), data.size()).ok());
      results[c.rank()].push_back(std::move(data));
    }
  });
  for (size_t it = 0; it < counts.size(); ++it) {
    std::vector<float> want(counts[it], 0.0f);
    for (int r = 0; r < size; ++r) {
      const auto d = RankData(r, it, counts[it]);
      for (size_t i = 0; i < want.size(); ++i) want[i] = r == 0 ? d[i] : want[i] + d[i];
    }
    for (int r = 0; r < size; ++r) {
      ASSERT_EQ(results[r][it].size(), want.size());
      EXPECT_EQ(std::memcmp(results[r][it].data(), want.data(), want.size() * sizeof(float)), 0)
          << "rank " << r << " count " << counts[it];
    }
  }
}

TEST_P(ThreadCommunicatorTest, AllGatherConcatenatesInRankOrder) {
  const int size = GetParam();
  const size_t count = 5;
  RunRanks(size, [&](Communicator& c) {
    for (int it = 0; it < 3; ++it) {
      const auto mine = RankData(c.rank(), it, count);
      std::vector<float> all(size * count, -1.0f);
      ASSERT_TRUE(c.AllGather(mine.data(), all.data(), count).ok());
      for (int r = 0; r < size; ++r) {
        const auto theirs = RankData(r, it, count);
        EXPECT_EQ(std::vector<float>(all.begin() + r * count, all.begin() + (r + 1) * count),
                  theirs);
      }
    }
  });
}

TEST_P(ThreadCommunicatorTest, BroadcastCopiesRootDataToEveryRank) {
  const int size = GetParam();
  RunRanks(size, [&](Communicator& c) {
    for (int root = 0; root < size; ++root) {
      auto data = RankData(c.rank(), root, 9);
      ASSERT_TRUE(c.Broadcast(data.data(), data.size(), root).ok());
      EXPECT_EQ(data, RankData(root, root, 9)) << "rank " << c.rank() << " root " << root;
    }
  });
}

TEST_P(ThreadCommunicatorTest, MismatchedCountFailsOnEveryRankAndGroupStaysUsable) {
  const int size = GetParam();
  if (size == 1) GTEST_SKIP() << "a single rank cannot disagree with itself";
  RunRanks(size, [&](Communicator& c) {
    std::vector<float> data(8, 1.0f);
    const size_t count = c.rank() == 0 ? 4 : 8;
    EXPECT_EQ(c.AllReduceSum(data.data(), count).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(data, std::vector<float>(8, 1.0f)) << "data moved despite the error";
    ASSERT_TRUE(c.AllReduceSum(data.data(), data.size()).ok());
    EXPECT_EQ(data, std::vector<float>(8, static_cast<float>(size)));
  });
}

INSTANTIATE_TEST_SUITE_P(Sizes, ThreadCommunicatorTest, ::testing::Values(1, 2, 4));

}  // namespace
}  // namespace hc::runtime
