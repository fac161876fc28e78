// Redis-specific behaviour: replicas share one ledger, the round trips per
// turn, and what Redis itself counted (INFO commandstats).
#include "router/ledger/redis_ledger.h"

#include <atomic>
#include <functional>
#include <string>

#include "gtest/gtest.h"
#include "tests/unit/router/ledger/redis_server_fixture.h"

namespace hc::router {
namespace {

class RedisLedgerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new testing::RedisServer(); }
  static void TearDownTestSuite() { delete server_; }
  void SetUp() override {
    // Fail, not skip: a missing server must not pass as a green run.
    if (!server_->ok())
      FAIL() << server_->error() << " (scripts/install-deps.sh installs redis-server)";
  }
  std::unique_ptr<RedisLedger> Open(LedgerOptions o = {}, RedisLedgerHooks hooks = {}) {
    o.backend = server_->url();
    o.redis_prefix = "replicas";
    auto l = OpenRedisLedger(o, std::move(hooks));
    EXPECT_TRUE(l.ok()) << l.status();
    return l.ok() ? std::move(l).value() : nullptr;
  }
  // Polls `done` until it holds or 30 s pass: waits on Redis's own expiry.
  static bool Eventually(const std::function<bool()>& done) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (!done()) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return true;
  }
  static testing::RedisServer* server_;
};
testing::RedisServer* RedisLedgerTest::server_ = nullptr;

TEST_F(RedisLedgerTest, TwoReplicasShareLeasesAndCommits) {
  auto a = Open(), b = Open();
  const LedgerKey key{"s", "shared"};
  ASSERT_TRUE(a->AcquireLease(key, "router-a", absl::Seconds(30)).ok());
  EXPECT_EQ(b->AcquireLease(key, "router-b", absl::Seconds(30)).status().code(),
            absl::StatusCode::kAborted);
  CommitRequest c;
  c.appended_tokens = {9, 8, 7};
  c.appended_messages = {LedgerMessage{Role::kSystem, 0, 3, "sys"}};
  c.worker = WorkerState{"10.0.0.1:50052", 1, 2, 99};
  ASSERT_TRUE(a->Commit(key, "router-a", c).ok());
  auto rec = b->Get(key);
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->tokens, c.appended_tokens);
  EXPECT_EQ(rec->messages, c.appended_messages);
  EXPECT_EQ(rec->worker, c.worker);
  EXPECT_EQ(*b->CountConversations(), 1u);
}

TEST_F(RedisLedgerTest, ATurnCostsTwoRoundTripsAsRedisCountsThem) {
  auto ledger = Open();
  const LedgerKey key{"s", "rt"};
  const auto evalsha_calls = [&] {
    const std::string info = server_->Command("INFO", "commandstats");
    const size_t at = info.find("cmdstat_evalsha:calls=");
    return at == std::string::npos ? 0L : std::stol(info.substr(at + 22));
  };
  const long before_server = evalsha_calls();
  const uint64_t before = ledger->round_trips();
  auto rec = ledger->AcquireLease(key, "r", absl::Seconds(30));
  ASSERT_TRUE(rec.ok());
  CommitRequest c;
  c.appended_tokens = {1};
  ASSERT_TRUE(ledger->Commit(key, "r", c).ok());
  EXPECT_EQ(ledger->round_trips() - before, 2u);
  EXPECT_EQ(evalsha_calls() - before_server, 2);
}

TEST_F(RedisLedgerTest, ScriptsAreReloadedAfterAFlush) {
  auto ledger = Open();
  ASSERT_EQ(server_->Command("SCRIPT", "FLUSH"), "OK");
  EXPECT_EQ(ledger->Get(LedgerKey{"s", "none"}).status().code(), absl::StatusCode::kNotFound);
}

// kill -9 of a router during a first turn: nothing releases the lease, and
// the lease-only hash must not outlive it.
TEST_F(RedisLedgerTest, LeaseOnlyEntryOfAKilledRouterVanishesWhenItsLeaseExpires) {
  const LedgerKey key{"s", "killed-first-turn"};
  const std::string m = "replicas:{73:killed-first-turn}:m";
  auto crashed = Open();
  ASSERT_TRUE(crashed->AcquireLease(key, "dead-router", absl::Milliseconds(200)).ok());
  ASSERT_EQ(server_->Command("EXISTS", m), "1");
  crashed.reset();  // never commits nor releases
  EXPECT_TRUE(Eventually([&] { return server_->Command("EXISTS", m) == "0"; }))
      << "the lease-only hash never expired; PTTL " << server_->Command("PTTL", m);
  auto ledger = Open();
  auto rec = ledger->AcquireLease(key, "next-router", absl::Seconds(30));
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->round, 0u);
}

// The empty tenant keeps the layout of before tenants (the test above pins
// it); a tenant's conversation keys keep one hash tag, with the tenant inside.
TEST_F(RedisLedgerTest, ATenantsKeysShareOneHashTagThatNamesTheTenant) {
  auto ledger = Open();
  const LedgerKey key{"s", "c", "t"};  // hex: s = 73, t = 74
  auto rec = ledger->AcquireLease(key, "r", absl::Seconds(30));
  ASSERT_TRUE(rec.ok()) << rec.status();
  CommitRequest c;
  c.appended_tokens = {1, 2};
  c.appended_messages = {LedgerMessage{Role::kUser, 0, 2, "hi"}};
  ASSERT_TRUE(ledger->Commit(key, "r", c).ok());
  for (const char* k : {"replicas:{t74/73:c}:m", "replicas:{t74/73:c}:t", "replicas:{t74/73:c}:g",
                        "replicas:{t74/73}:z", "replicas:{t74}:n"}) {
    EXPECT_EQ(server_->Command("EXISTS", k), "1") << k;
  }
  EXPECT_EQ(server_->Command("EXISTS", "replicas:{73:c}:m"), "0");
  ASSERT_TRUE(ledger->Delete(key).ok());
  EXPECT_EQ(server_->Command("ZCARD", "replicas:{t74}:n"), "0");
}

TEST_F(RedisLedgerTest, LeaseOnlyTtlFollowsRenewalsAndIsClearedByTheFirstCommit) {
  const LedgerKey key{"s", "ttl"};
  const std::string m = "replicas:{73:ttl}:m";
  auto ledger = Open();
  ASSERT_TRUE(ledger->AcquireLease(key, "r", absl::Seconds(30)).ok());
  const long first = std::stol(server_->Command("PTTL", m));
  EXPECT_GT(first, 0);
  EXPECT_LE(first, 30'000);
  ASSERT_TRUE(ledger->RenewLease(key, "r", absl::Seconds(90)).ok());
  EXPECT_GT(std::stol(server_->Command("PTTL", m)), 30'000);
  CommitRequest c;
  c.appended_tokens = {1};
  ASSERT_TRUE(ledger->Commit(key, "r", c).ok());
  EXPECT_EQ(server_->Command("PTTL", m), "-1");  // no conversation_ttl: kept
}

TEST_F(RedisLedgerTest, ACommitWhoseReplyIsLostIsResentAndAppliedOnce) {
  std::atomic<int> lost{0};
  RedisLedgerHooks hooks;
  hooks.lose_commit_reply = [&] { return lost.fetch_add(1) == 0; };  // the first one
  auto ledger = Open({}, std::move(hooks));
  const LedgerKey key{"s", "lost-reply"};
  for (uint64_t round = 0; round < 2; ++round) {
    ASSERT_TRUE(ledger->AcquireLease(key, "r" + std::to_string(round), absl::Seconds(30)).ok());
    CommitRequest c;
    c.expected_round = round;
    c.appended_tokens = {static_cast<uint32_t>(10 + round), 20};
    c.appended_messages = {LedgerMessage{Role::kUser, static_cast<uint32_t>(2 * round),
                                         static_cast<uint32_t>(2 * round + 2), "m"}};
    const absl::Status s = ledger->Commit(key, "r" + std::to_string(round), c);
    ASSERT_TRUE(s.ok()) << "round " << round << ": " << s;
  }
  EXPECT_GE(lost.load(), 2);  // the first reply was lost, and the resend answered
  auto rec = ledger->Get(key);
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->round, 2u);
  EXPECT_EQ(rec->tokens, (std::vector<uint32_t>{10, 20, 11, 20}));  // each round once
  EXPECT_EQ(rec->messages.size(), 2u);
}

TEST_F(RedisLedgerTest, AResentCommitIsOkOnlyForTheSameHolderRoundAndTokens) {
  auto ledger = Open();
  const LedgerKey key{"s", "resend"};
  ASSERT_TRUE(ledger->AcquireLease(key, "a", absl::Seconds(30)).ok());
  CommitRequest c;
  c.appended_tokens = {1, 2};
  ASSERT_TRUE(ledger->Commit(key, "a", c).ok());
  EXPECT_TRUE(ledger->Commit(key, "a", c).ok());  // what a resend does
  CommitRequest other = c;
  other.appended_tokens = {1, 3};
  EXPECT_EQ(ledger->Commit(key, "a", other).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ledger->Commit(key, "b", c).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ledger->Get(key)->tokens, (std::vector<uint32_t>{1, 2}));
}

// Lease expiry is Redis's clock, not each router's: a router whose clock runs
// an hour ahead does not take over a lease another router just took.
TEST_F(RedisLedgerTest, RoutersWithSkewedClocksAgreeOnLeaseExpiry) {
  LedgerOptions behind, ahead;
  behind.clock = [] { return absl::Now() - absl::Hours(1); };
  ahead.clock = [] { return absl::Now() + absl::Hours(1); };
  auto a = Open(behind), b = Open(ahead);
  const LedgerKey key{"s", "skew"};
  ASSERT_TRUE(a->AcquireLease(key, "router-a", absl::Seconds(30)).ok());
  EXPECT_EQ(b->AcquireLease(key, "router-b", absl::Seconds(30)).status().code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(b->Delete(key).code(), absl::StatusCode::kNotFound);
  CommitRequest c;
  c.appended_tokens = {1};
  const absl::Time before = absl::Now();
  ASSERT_TRUE(a->Commit(key, "router-a", c).ok());
  ASSERT_TRUE(a->AcquireLease(key, "router-a2", absl::Seconds(30)).ok());
  EXPECT_EQ(b->Delete(key).code(), absl::StatusCode::kAborted);
  auto rec = b->Get(key);
  ASSERT_TRUE(rec.ok()) << rec.status();
  // Last activity is the server's time too (loopback: the same machine).
  EXPECT_GE(rec->last_activity, before - absl::Seconds(5));
  EXPECT_LE(rec->last_activity, absl::Now() + absl::Seconds(5));
}

TEST(RedisLedgerOpenTest, UnreachableServerIsUnavailable) {
  LedgerOptions o;
  o.backend = "redis://127.0.0.1:1";
  EXPECT_EQ(OpenRedisLedger(o).status().code(), absl::StatusCode::kUnavailable);
  o.backend = "redis://host:notaport";
  EXPECT_EQ(OpenRedisLedger(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hc::router

namespace hc::router {
namespace {

TEST(RedisLedgerAuthTest, PasswordInTheUrlIsSentWithAuthAndAWrongOneIsUnauthenticated) {
  testing::RedisServer server({"--requirepass", "s3cret"});
  // Fail, not skip: a missing server must not pass as a green run.
  if (!server.ok()) FAIL() << server.error() << " (scripts/install-deps.sh installs redis-server)";
  const std::string hostport = "127.0.0.1:" + std::to_string(server.port());
  LedgerOptions o;
  o.backend = "redis://:s3cret@" + hostport + "/2";
  auto ledger = OpenRedisLedger(o);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  ASSERT_TRUE((*ledger)->AcquireLease(LedgerKey{"s", "a"}, "r", absl::Seconds(30)).ok());
  CommitRequest c;
  c.appended_tokens = {1};
  ASSERT_TRUE((*ledger)->Commit(LedgerKey{"s", "a"}, "r", c).ok());
  EXPECT_EQ(*(*ledger)->CountConversations(), 1u);
  // The default user by name works too (Redis 6+ ACL form).
  o.backend = "redis://default:s3cret@" + hostport + "/2";
  auto by_name = OpenRedisLedger(o);
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_EQ(*(*by_name)->CountConversations(), 1u);  // same db 2
  o.backend = "redis://:wrong@" + hostport;
  EXPECT_EQ(OpenRedisLedger(o).status().code(), absl::StatusCode::kUnauthenticated);
  o.backend = "redis://" + hostport;
  EXPECT_EQ(OpenRedisLedger(o).status().code(), absl::StatusCode::kUnauthenticated);
}

TEST(RedisLedgerOpenTest, TlsUrlIsUnimplemented) {
  LedgerOptions o;
  o.backend = "rediss://127.0.0.1:6380";
  const absl::Status s = OpenLedger(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_NE(s.message().find("TLS"), std::string::npos) << s;
}

}  // namespace
}  // namespace hc::router
