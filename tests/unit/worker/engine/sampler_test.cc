#include "worker/engine/sampler.h"

#include <cmath>
#include <map>
#include <vector>

#include "gtest/gtest.h"

namespace hc::engine {
namespace {

std::vector<float> LogitsOf(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

TEST(SamplerTest, GreedyPicksArgmaxAndLowestIdOnTies) {
  Sampler s(1);
  const std::vector<float> logits = {0.1f, 2.0f, 2.0f, -1.0f};
  EXPECT_EQ(s.Sample(logits, {.temperature = 0.0f}).token, 1);
  EXPECT_EQ(s.Sample(logits, {.temperature = 0.7f, .top_k = 1}).token, 1);
}

TEST(SamplerTest, SameSeedGivesSameSequenceAndOtherSeedDiffers) {
  const std::vector<float> logits = LogitsOf({0.2, 0.2, 0.2, 0.2, 0.2});
  Sampler a(42), b(42), c(43);
  std::vector<int> sa, sb, sc;
  for (int i = 0; i < 64; ++i) {
    sa.push_back(a.Sample(logits, {}).token);
    sb.push_back(b.Sample(logits, {}).token);
    sc.push_back(c.Sample(logits, {}).token);
  }
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
}

TEST(SamplerTest, FrequenciesFollowSoftmaxAtTemperatureOne) {
  const std::vector<double> probs = {0.5, 0.25, 0.15, 0.1};
  const std::vector<float> logits = LogitsOf(probs);
  Sampler s(7);
  std::map<int, int> counts;
  const int n = 40000;
  for (int i = 0; i < n; ++i) counts[s.Sample(logits, {}).token]++;
  for (int t = 0; t < 4; ++t) EXPECT_NEAR(counts[t] / double(n), probs[t], 0.015) << "token " << t;
}

TEST(SamplerTest, LowTemperatureSharpensTheDistribution) {
  const std::vector<float> logits = LogitsOf({0.6, 0.4});
  Sampler s(3);
  int top = 0;
  for (int i = 0; i < 2000; ++i) top += s.Sample(logits, {.temperature = 0.1f}).token == 0;
  // p(top) = 0.6^10 / (0.6^10 + 0.4^10) ~= 0.983
  EXPECT_GT(top, 1900);
}

TEST(SamplerTest, TopKNeverSamplesOutsideTheKBest) {
  const std::vector<float> logits = LogitsOf({0.1, 0.4, 0.05, 0.3, 0.15});
  Sampler s(5);
  std::map<int, int> counts;
  for (int i = 0; i < 5000; ++i) counts[s.Sample(logits, {.top_k = 2}).token]++;
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_GT(counts[1], 0);
  EXPECT_GT(counts[3], 0);
  EXPECT_NEAR(counts[1] / 5000.0, 0.4 / 0.7, 0.03);
}

TEST(SamplerTest, TopPKeepsTheSmallestPrefixReachingP) {
  const std::vector<float> logits = LogitsOf({0.2, 0.5, 0.3});
  Sampler s(9);
  std::map<int, int> counts;
  for (int i = 0; i < 5000; ++i) counts[s.Sample(logits, {.top_p = 0.6f}).token]++;
  // Sorted: 1 (0.5), 2 (0.3): mass 0.8 >= 0.6 after two tokens.
  EXPECT_EQ(counts.count(0), 0u);
  EXPECT_NEAR(counts[1] / 5000.0, 0.5 / 0.8, 0.03);
  std::map<int, int> tiny;
  for (int i = 0; i < 200; ++i) tiny[s.Sample(logits, {.top_p = 0.01f}).token]++;
  EXPECT_EQ(tiny.size(), 1u);  // at least one token survives: the best
  EXPECT_EQ(tiny.begin()->first, 1);
}

TEST(SamplerTest, LogprobIsLogSoftmaxOfRawLogits) {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f};
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  Sampler s(1);
  const SampledToken t = s.Sample(logits, {.temperature = 0.0f});
  EXPECT_EQ(t.token, 2);
  EXPECT_NEAR(t.logprob, 3.0 - std::log(z), 1e-6);
  EXPECT_NEAR(TokenLogprob(logits, 0), 1.0 - std::log(z), 1e-6);
}

TEST(SamplerTest, TopLogprobsAreTheMostLikelyTokensInOrderWithTiesByLowerId) {
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 2.0f, 3.0f, 0.0f};
  std::vector<TokenAlternative> top;
  AppendTopLogprobs(logits, 3, &top);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].token, 1);  // tie with 4: the lower id first, as greedy picks
  EXPECT_EQ(top[1].token, 4);
  EXPECT_EQ(top[2].token, 3);
  for (const TokenAlternative& a : top) {
    EXPECT_NEAR(a.logprob, TokenLogprob(logits, a.token), 1e-6) << a.token;
  }
  // Greedy's choice is the first alternative.
  Sampler s(1);
  EXPECT_EQ(s.Sample(logits, {.temperature = 0.0f}).token, top[0].token);
}

TEST(SamplerTest, TopLogprobsAreCappedByTheVocabularyAndZeroGivesNone) {
  const std::vector<float> logits = {1.0f, 2.0f};
  std::vector<TokenAlternative> top;
  AppendTopLogprobs(logits, 0, &top);
  EXPECT_TRUE(top.empty());
  AppendTopLogprobs(logits, 20, &top);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].token, 1);
  EXPECT_EQ(top[1].token, 0);
  EXPECT_NEAR(std::exp(top[0].logprob) + std::exp(top[1].logprob), 1.0, 1e-6);
}

}  // namespace
}  // namespace hc::engine
