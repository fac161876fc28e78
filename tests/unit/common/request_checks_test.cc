#include "common/request_checks.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "gtest/gtest.h"

namespace hc {
namespace {

using hybridcache::v1::SamplingParams;

// The message of ValidateSamplingParams(s, 100), or "ok".
std::string Check(const SamplingParams& s) {
  const absl::Status status = ValidateSamplingParams(s, 100);
  if (status.ok()) return "ok";
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  return std::string(status.message());
}

TEST(RequestChecksTest, TemperatureMustBeFiniteAndNonNegative) {
  SamplingParams s;
  for (const float t : {0.0f, -0.0f, 1e-30f, 2.0f, 1e30f}) {
    s.set_temperature(t);
    EXPECT_EQ(Check(s), "ok") << t;
  }
  for (const float t : {-1.0f, std::numeric_limits<float>::infinity(),
                        -std::numeric_limits<float>::infinity(), std::nanf("")}) {
    s.set_temperature(t);
    EXPECT_NE(Check(s).find("sampling.temperature must be finite and >= 0"), std::string::npos)
        << t;
  }
}

TEST(RequestChecksTest, TopPMustBeInZeroOne) {
  SamplingParams s;
  s.set_top_p(1.0f);
  EXPECT_EQ(Check(s), "ok");
  for (const float p :
       {0.0f, -0.5f, 1.0000001f, std::nanf(""), std::numeric_limits<float>::infinity()}) {
    s.set_top_p(p);
    EXPECT_NE(Check(s).find("sampling.top_p must be in (0, 1]"), std::string::npos) << p;
  }
}

TEST(RequestChecksTest, TopLogprobsIsAtMostTwentyAndNeedsLogprobs) {
  SamplingParams s;
  s.set_logprobs(true);
  s.set_top_logprobs(20);
  EXPECT_EQ(Check(s), "ok");
  s.set_top_logprobs(21);
  EXPECT_EQ(Check(s), "sampling.top_logprobs must be at most 20, got 21");
  s.set_top_logprobs(1);
  s.set_logprobs(false);
  EXPECT_EQ(Check(s), "sampling.top_logprobs requires sampling.logprobs");
}

TEST(RequestChecksTest, TopKFitsAnIntAndMaxTokensIsPositive) {
  SamplingParams s;
  s.set_top_k(INT32_MAX);
  EXPECT_EQ(Check(s), "ok");
  s.set_top_k(static_cast<uint32_t>(INT32_MAX) + 1);
  EXPECT_NE(Check(s).find("sampling.top_k must be at most 2147483647"), std::string::npos);
  s.clear_top_k();
  s.set_max_tokens(UINT32_MAX);
  EXPECT_EQ(Check(s), "ok");
  s.set_max_tokens(0);
  EXPECT_EQ(Check(s), "sampling.max_tokens must be >= 1");
}

TEST(RequestChecksTest, StopTokenIdsMustBeBelowTheVocabulary) {
  SamplingParams s;
  s.add_stop_token_ids(99);
  EXPECT_EQ(Check(s), "ok");
  s.add_stop_token_ids(100);
  EXPECT_EQ(Check(s), "sampling.stop_token_ids[1] = 100 is outside the vocabulary (size 100)");
}

TEST(RequestChecksTest, KeyCharactersAndLengths) {
  EXPECT_TRUE(ValidateConversationKey(std::string(kMaxConversationIdLength, 'a'),
                                      std::string(kMaxCacheSaltBytes, 's'))
                  .ok());
  EXPECT_FALSE(ValidateConversationKey(std::string(kMaxConversationIdLength + 1, 'a'), "").ok());
  EXPECT_FALSE(ValidateConversationKey("a", std::string(kMaxCacheSaltBytes + 1, 's')).ok());
  for (const char* id : {"a/b", "a b", "caf\xC3\xA9", "a\n", "*"}) {
    EXPECT_EQ(ValidateConversationKey(id, "").message(),
              "conversation_id may only contain the characters [A-Za-z0-9._:-]")
        << id;
  }
}

}  // namespace
}  // namespace hc
