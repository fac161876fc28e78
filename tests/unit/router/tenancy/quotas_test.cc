// Per-tenant quotas: exact limits, retry delays, the token bucket on a fake
// clock, and the Redis implementation shared by two routers (with a dead
// router's turns expiring).
#include "router/tenancy/quotas.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "common/retry_delay.h"
#include "gtest/gtest.h"
#include "router/tenancy/redis_quotas.h"
#include "tests/unit/router/ledger/redis_server_fixture.h"

namespace hc::router {
namespace {

// AdmitTurn, waiting for its answer.
Admission Admit(TenantQuotas& q, const std::string& tenant, const std::string& turn,
                const TenantLimits& limits, absl::Duration lease = absl::Seconds(30)) {
  absl::Notification done;
  Admission out;
  q.AdmitTurn(tenant, turn, limits, lease, [&](Admission a) {
    out = std::move(a);
    done.Notify();
  });
  done.WaitForNotification();
  return out;
}

TEST(LocalQuotasTest, ConcurrentTurnsAreLimitedExactlyPerTenant) {
  LocalQuotas q;
  const TenantLimits limits{.max_concurrent_turns = 2};
  ASSERT_TRUE(Admit(q, "a", "1", limits).status.ok());
  ASSERT_TRUE(Admit(q, "a", "2", limits).status.ok());
  Admission third = Admit(q, "a", "3", limits);
  EXPECT_EQ(third.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(third.refusal, QuotaRefusal::kConcurrentTurns);
  EXPECT_EQ(RetryDelayOf(third.status), kTurnRetryDelay);
  EXPECT_NE(third.status.message().find("retry in 1s"), std::string::npos) << third.status;
  EXPECT_TRUE(Admit(q, "b", "1", limits).status.ok()) << "another tenant has its own count";
  q.EndTurn("a", "1", nullptr);
  EXPECT_TRUE(Admit(q, "a", "4", limits).status.ok());
}

TEST(LocalQuotasTest, TokensPerMinuteIsABucketThatRefillsWithTime) {
  std::atomic<int64_t> now_ms{1'000'000};
  LocalQuotas q([&] { return absl::FromUnixMillis(now_ms.load()); });
  const TenantLimits limits{.tokens_per_minute = 600};  // 10 tokens per second
  // A full bucket: turns of 200 tokens; the third takes it to 0.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Admit(q, "a", "t", limits).status.ok()) << i;
    q.ChargeTokens("a", 200, limits);
    q.EndTurn("a", "t", nullptr);
  }
  Admission refused = Admit(q, "a", "t", limits);
  EXPECT_EQ(refused.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.refusal, QuotaRefusal::kTokensPerMinute);
  // One token at 10 per second: 100 ms.
  EXPECT_EQ(RetryDelayOf(refused.status), absl::Milliseconds(100));
  EXPECT_NE(refused.status.message().find("600 tokens per minute; retry in 100ms"),
            std::string::npos)
      << refused.status;
  now_ms += 99;
  EXPECT_FALSE(Admit(q, "a", "t", limits).status.ok());
  now_ms += 1;
  EXPECT_TRUE(Admit(q, "a", "t", limits).status.ok());
  q.EndTurn("a", "t", nullptr);
  // A turn larger than what is left drives the bucket into debt.
  q.ChargeTokens("a", 1000, limits);
  Admission debt = Admit(q, "a", "t", limits);
  EXPECT_EQ(RetryDelayOf(debt.status), absl::Seconds(100));  // 1000 tokens at 10/s
  EXPECT_TRUE(Admit(q, "b", "t", limits).status.ok()) << "another tenant has its own bucket";
}

class RedisQuotasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!redis_.ok())
      GTEST_FAIL() << "redis-server did not start (scripts/install-deps.sh installs it)";
  }
  std::unique_ptr<TenantQuotas> Open() {
    return OpenRedisQuotas({.url = redis_.url(), .prefix = "quotas"}).value();
  }
  testing::RedisServer redis_;
};

TEST_F(RedisQuotasTest, TwoRoutersShareTheConcurrentTurnLimit) {
  auto a = Open();
  auto b = Open();
  const TenantLimits limits{.max_concurrent_turns = 2};
  ASSERT_TRUE(Admit(*a, "t", "a/1", limits).status.ok());
  ASSERT_TRUE(Admit(*b, "t", "b/1", limits).status.ok());
  Admission refused = Admit(*a, "t", "a/2", limits);
  EXPECT_EQ(refused.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.refusal, QuotaRefusal::kConcurrentTurns);
  EXPECT_EQ(RetryDelayOf(refused.status), kTurnRetryDelay);
  EXPECT_TRUE(Admit(*a, "other", "a/3", limits).status.ok());
  b->EndTurn("t", "b/1", nullptr);
  // b's next answer comes after its EndTurn ran (one connection, in order).
  ASSERT_TRUE(Admit(*b, "other", "b/2", limits).status.ok());
  EXPECT_TRUE(Admit(*a, "t", "a/4", limits).status.ok());
}

TEST_F(RedisQuotasTest, ADeadRoutersTurnsFreeTheirSlotsWhenTheirLeaseEnds) {
  auto dead = Open();
  auto live = Open();
  const TenantLimits limits{.max_concurrent_turns = 1};
  // A router admits a turn with a short lease, then dies (never ends it).
  ASSERT_TRUE(Admit(*dead, "t", "dead/1", limits, absl::Milliseconds(200)).status.ok());
  dead.reset();
  EXPECT_FALSE(Admit(*live, "t", "live/1", limits).status.ok());
  // Redis's clock decides; wait for the lease to pass (bounded).
  bool admitted = false;
  for (absl::Time deadline = absl::Now() + absl::Seconds(20);
       !admitted && absl::Now() < deadline;) {
    absl::SleepFor(absl::Milliseconds(50));
    admitted = Admit(*live, "t", "live/1", limits).status.ok();
  }
  EXPECT_TRUE(admitted);
}

TEST_F(RedisQuotasTest, RenewedTurnsKeepTheirSlot) {
  auto q = Open();
  const TenantLimits limits{.max_concurrent_turns = 1};
  ASSERT_TRUE(Admit(*q, "t", "1", limits, absl::Milliseconds(300)).status.ok());
  q->RenewTurn("t", "1", absl::Hours(1));
  // Commands on one connection run in order: the renewal precedes this.
  absl::SleepFor(absl::Milliseconds(400));
  EXPECT_FALSE(Admit(*q, "t", "2", limits).status.ok());
}

TEST_F(RedisQuotasTest, TwoRoutersShareTheTokenBucket) {
  auto a = Open();
  auto b = Open();
  // 6 tokens per minute: one token per 10 s, so the test's own duration
  // cannot refill a whole token.
  const TenantLimits limits{.tokens_per_minute = 6};
  ASSERT_TRUE(Admit(*a, "t", "a/1", limits).status.ok());
  a->ChargeTokens("t", 4, limits);
  a->EndTurn("t", "a/1", nullptr);
  ASSERT_TRUE(Admit(*a, "t", "a/2", limits).status.ok());  // 2 left (same connection: in order)
  a->ChargeTokens("t", 2, limits);
  a->EndTurn("t", "a/2", nullptr);
  // Router b reads the same bucket: a's charges are applied once a's next
  // command has answered.
  ASSERT_FALSE(Admit(*a, "t", "a/3", limits).status.ok());
  Admission refused = Admit(*b, "t", "b/1", limits);
  EXPECT_EQ(refused.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.refusal, QuotaRefusal::kTokensPerMinute);
  const absl::Duration delay = RetryDelayOf(refused.status).value();
  EXPECT_GT(delay, absl::Seconds(9));
  EXPECT_LE(delay, absl::Seconds(10));
}

}  // namespace
}  // namespace hc::router
