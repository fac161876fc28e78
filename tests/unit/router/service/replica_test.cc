// Router replicas sharing one Redis ledger, and takeover of a crashed
// router's expired lease.
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/grpc_status.h"
#include "gtest/gtest.h"
#include "router/ledger/ledger_table.h"
#include "router/ledger/memory_ledger.h"
#include "router/tenancy/api_keys.h"
#include "router/tenancy/quotas.h"
#include "router/tenancy/redis_quotas.h"
#include "tests/unit/router/ledger/redis_server_fixture.h"
#include "tests/unit/router/service/router_harness.h"

namespace hc::router {
namespace {

using testing::HarnessOptions;
using testing::RouterHarness;
using testing::TurnResult;

std::unique_ptr<ConversationLedger> Redis(const testing::RedisServer& server) {
  LedgerOptions o;
  o.backend = server.url();
  o.redis_prefix = "replicas";
  return OpenLedger(o).value();
}

TEST(RouterReplicaTest, TwoRoutersOnOneRedisLedgerShareConversationsAndLeases) {
  testing::RedisServer redis;
  // Fail, not skip: a missing server must not pass as a green run.
  if (!redis.ok()) FAIL() << redis.error() << " (scripts/install-deps.sh installs redis-server)";
  HarnessOptions a_opts;
  a_opts.ledger = Redis(redis);
  a_opts.service.router_id = "router-a";
  RouterHarness a(1, std::move(a_opts));
  HarnessOptions b_opts;
  b_opts.ledger = Redis(redis);
  b_opts.service.router_id = "router-b";
  b_opts.external_workers = {a.worker(0).address()};
  RouterHarness b(0, std::move(b_opts));

  ASSERT_TRUE(a.Complete(RouterHarness::UserTurn("c", "one", "s")).status.ok());
  // Router B continues it, sticky on the worker A placed it on (cache hit).
  TurnResult r = b.Complete(RouterHarness::UserTurn("c", "two", "s"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.completed()->committed_round(), 2u);
  EXPECT_GT(r.started()->cached_tokens(), 0u);

  // A turn in flight on A refuses a concurrent one on B.
  a.worker(0).BlockNext();
  TurnResult first;
  std::thread t([&] { first = a.Complete(RouterHarness::UserTurn("c", "three", "s")); });
  a.worker(0).entered().WaitForNotification();
  EXPECT_EQ(b.Complete(RouterHarness::UserTurn("c", "four", "s")).status.error_code(),
            grpc::StatusCode::ABORTED);
  a.worker(0).Unblock();
  t.join();
  ASSERT_TRUE(first.status.ok());
  EXPECT_EQ(b.ledger().Get(LedgerKey{"s", "c"})->round, 3u);
}

// Two routers on one Redis with API keys: a tenant's concurrent turns and
// conversations are limited across both (RedisQuotas and the Redis ledger's
// tenant sets), not per router.
TEST(RouterReplicaTest, TenantLimitsAreSharedByRoutersOnOneRedis) {
  testing::RedisServer redis;
  if (!redis.ok()) FAIL() << redis.error() << " (scripts/install-deps.sh installs redis-server)";
  char tmpl[] = "/tmp/hc-replica-keys-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  std::ofstream(dir + "/keys.json")
      << R"({"keys": [{"sha256": ")" << HashApiKey("k")
      << R"(", "tenant": "t", "salts": ["s"], "limits": {"max_concurrent_turns": 1, "max_conversations": 2}}]})";
  auto keys = ApiKeyStore::Open({.path = dir + "/keys.json"}).value();
  std::filesystem::remove_all(dir);
  const auto options = [&](const std::string& id) {
    LedgerOptions lo;
    lo.backend = redis.url();
    lo.redis_prefix = "tenants";
    lo.tenant_conversation_limit = [k = keys.get()](std::string_view t) {
      return k->LimitsOf(t).max_conversations;
    };
    HarnessOptions o;
    o.ledger = OpenLedger(lo).value();
    o.service.router_id = id;
    o.service.api_keys = keys.get();
    return o;
  };
  auto qa = OpenRedisQuotas({.url = redis.url(), .prefix = "tenants"}).value();
  auto qb = OpenRedisQuotas({.url = redis.url(), .prefix = "tenants"}).value();
  HarnessOptions a_opts = options("router-a");
  a_opts.service.quotas = qa.get();
  RouterHarness a(1, std::move(a_opts));
  HarnessOptions b_opts = options("router-b");
  b_opts.service.quotas = qb.get();
  b_opts.external_workers = {a.worker(0).address()};
  RouterHarness b(0, std::move(b_opts));

  // A turn held open on A takes the tenant's only slot: B refuses the next.
  a.worker(0).BlockNext();
  TurnResult held;
  std::thread t([&] { held = a.CompleteAs("k", RouterHarness::UserTurn("c1", "hi", "s")); });
  a.worker(0).entered().WaitForNotification();
  TurnResult refused = b.CompleteAs("k", RouterHarness::UserTurn("c2", "hi", "s"));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.status.error_message().find("max_concurrent_turns"), std::string::npos)
      << refused.status.error_message();
  EXPECT_EQ(GrpcRetryDelay(refused.status), kTurnRetryDelay);
  a.worker(0).Unblock();
  t.join();
  ASSERT_TRUE(held.status.ok()) << held.status.error_message();

  // Conversations: one on A, one on B, the third refused on either.
  ASSERT_TRUE(b.CompleteAs("k", RouterHarness::UserTurn("c2", "hi", "s")).status.ok());
  TurnResult third = a.CompleteAs("k", RouterHarness::UserTurn("c3", "hi", "s"));
  EXPECT_EQ(third.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(third.status.error_message().find("already has 2 conversations"), std::string::npos)
      << third.status.error_message();
  EXPECT_EQ(GrpcRetryDelay(third.status), kTenantCapRetryDelay);
  EXPECT_EQ(b.CompleteAs("k", RouterHarness::UserTurn("c3", "hi", "s")).status.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST(RouterReplicaTest, ExpiredLeaseOfACrashedRouterIsTakenOver) {
  std::atomic<int64_t> now_s{1'000'000};
  HarnessOptions o;
  o.ledger = NewMemoryLedger([&] { return absl::FromUnixSeconds(now_s.load()); });
  RouterHarness h(1, std::move(o));
  // A router took the lease and died mid-turn.
  ASSERT_TRUE(
      h.ledger().AcquireLease(LedgerKey{"", "c"}, "crashed-router/7", absl::Seconds(30)).ok());
  EXPECT_EQ(h.Complete(RouterHarness::UserTurn("c", "hi")).status.error_code(),
            grpc::StatusCode::ABORTED);
  now_s += 31;
  TurnResult r = h.Complete(RouterHarness::UserTurn("c", "hi"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "c"})->round, 1u);
}

}  // namespace
}  // namespace hc::router
