// Router replicas sharing one Redis ledger, and takeover of a crashed
// router's expired lease.
#include <atomic>
#include <thread>

#include "gtest/gtest.h"
#include "router/ledger/memory_ledger.h"
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
  if (!redis.ok()) FAIL() << "redis-server did not start (scripts/install-deps.sh installs it)";
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

TEST(RouterReplicaTest, ExpiredLeaseOfACrashedRouterIsTakenOver) {
  std::atomic<int64_t> now_s{1'000'000};
  HarnessOptions o;
  o.ledger = NewMemoryLedger([&] { return absl::FromUnixSeconds(now_s.load()); });
  RouterHarness h(1, std::move(o));
  // A router took the lease and died mid-turn.
  ASSERT_TRUE(h.ledger().AcquireLease(LedgerKey{"", "c"}, "crashed-router/7", absl::Seconds(30)).ok());
  EXPECT_EQ(h.Complete(RouterHarness::UserTurn("c", "hi")).status.error_code(), grpc::StatusCode::ABORTED);
  now_s += 31;
  TurnResult r = h.Complete(RouterHarness::UserTurn("c", "hi"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "c"})->round, 1u);
}

}  // namespace
}  // namespace hc::router
