// Redis-specific behaviour: replicas share one ledger, the round trips per
// turn, and what Redis itself counted (INFO commandstats).
#include "gtest/gtest.h"
#include "router/ledger/redis_ledger.h"
#include "tests/unit/router/ledger/redis_server_fixture.h"

namespace hc::router {
namespace {

class RedisLedgerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new testing::RedisServer(); }
  static void TearDownTestSuite() { delete server_; }
  void SetUp() override {
    if (!server_->ok()) GTEST_SKIP() << "redis-server did not start";
  }
  std::unique_ptr<RedisLedger> Open() {
    LedgerOptions o;
    o.backend = server_->url();
    o.redis_prefix = "replicas";
    auto l = OpenRedisLedger(o);
    EXPECT_TRUE(l.ok()) << l.status();
    return l.ok() ? std::move(l).value() : nullptr;
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
  if (!server.ok()) GTEST_SKIP() << "redis-server did not start";
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
