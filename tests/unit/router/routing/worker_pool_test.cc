// Routing policy against fake probes and a fake resolver: no network, no
// sleeps (Refresh is called synchronously).
#include "router/routing/worker_pool.h"

#include <map>

#include "absl/container/flat_hash_map.h"
#include "gtest/gtest.h"

namespace hc::router {
namespace {

// Probe results the test sets per address; unknown addresses are unhealthy.
struct FakeWorld {
  absl::Mutex mu;
  std::map<std::string, absl::StatusOr<WorkerLoad>> loads;
  absl::StatusOr<std::vector<std::string>> dns = std::vector<std::string>{};
};

class FakeProber : public WorkerProber {
 public:
  explicit FakeProber(FakeWorld* world) : world_(world) {}
  std::vector<absl::StatusOr<WorkerLoad>> ProbeAll(
      const std::vector<std::shared_ptr<Worker>>& workers) override {
    absl::MutexLock lock(&world_->mu);
    std::vector<absl::StatusOr<WorkerLoad>> out;
    for (const auto& w : workers) {
      auto it = world_->loads.find(w->id());
      out.push_back(it == world_->loads.end() ? absl::UnavailableError("down") : it->second);
    }
    return out;
  }

 private:
  FakeWorld* world_;
};

class FakeResolver : public Resolver {
 public:
  explicit FakeResolver(FakeWorld* world) : world_(world) {}
  absl::StatusOr<std::vector<std::string>> Resolve(const std::string&) override {
    absl::MutexLock lock(&world_->mu);
    return world_->dns;
  }

 private:
  FakeWorld* world_;
};

WorkerLoad Load(uint32_t waiting, uint32_t free_kv = 100, uint32_t total_kv = 100) {
  WorkerLoad l;
  l.num_waiting = waiting;
  l.free_kv_blocks = free_kv;
  l.total_kv_blocks = total_kv;
  l.max_model_len = 4096;
  l.vocab_size = 1000;
  return l;
}

class WorkerPoolTest : public ::testing::Test {
 protected:
  std::unique_ptr<WorkerPool> MakePool(std::vector<std::string> workers, std::string dns = "") {
    WorkerPoolOptions o;
    o.static_workers = std::move(workers);
    o.dns_name = std::move(dns);
    o.overload_waiting = 4;
    return MakePool(std::move(o));
  }
  std::unique_ptr<WorkerPool> MakePool(WorkerPoolOptions o) {
    return std::make_unique<WorkerPool>(std::move(o), std::make_unique<FakeProber>(&world_),
                                        std::make_unique<FakeResolver>(&world_));
  }
  void Set(const std::string& id, absl::StatusOr<WorkerLoad> load) {
    absl::MutexLock lock(&world_.mu);
    world_.loads[id] = std::move(load);
  }
  FakeWorld world_;
};

TEST_F(WorkerPoolTest, NoHealthyWorkerIsUnavailable) {
  auto pool = MakePool({"a:1", "b:1"});
  pool->Refresh();
  EXPECT_EQ(pool->Route("").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(pool->counts().unhealthy, 2);
}

TEST_F(WorkerPoolTest, NewConversationGoesToTheWorkerWithFewerWaitingRequests) {
  auto pool = MakePool({"a:1", "b:1"});
  Set("a:1", Load(3));
  Set("b:1", Load(1));
  pool->Refresh();
  for (int i = 0; i < 20; ++i) {
    auto d = pool->Route("");
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->worker->id(), "b:1");
    EXPECT_EQ(d->kind, RouteKind::kPlaced);
  }
}

TEST_F(WorkerPoolTest, EqualQueuesAreBrokenByMoreFreeCache) {
  auto pool = MakePool({"a:1", "b:1"});
  Set("a:1", Load(0, 90, 100));
  Set("b:1", Load(0, 20, 100));
  pool->Refresh();
  EXPECT_EQ(pool->Route("")->worker->id(), "a:1");
}

TEST_F(WorkerPoolTest, PowerOfTwoChoicesNeverPicksTheMostLoadedAndFavoursTheLeast) {
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back("w" + std::to_string(i) + ":1");
  auto pool = MakePool(ids);
  for (int i = 0; i < 10; ++i) Set(ids[i], Load(i));
  pool->Refresh();
  std::map<std::string, int> picks;
  for (int i = 0; i < 2000; ++i) picks[pool->Route("")->worker->id()]++;
  EXPECT_EQ(picks.count("w9:1"), 0u);
  // w0 wins every draw it is in: 2 of 10 draws -> ~20%; w8 only against w9.
  EXPECT_GT(picks["w0:1"], picks["w8:1"] * 4);
}

TEST_F(WorkerPoolTest, InflightTurnsOfThisRouterCountAsLoad) {
  auto pool = MakePool({"a:1", "b:1"});
  Set("a:1", Load(0));
  Set("b:1", Load(1));
  pool->Refresh();
  pool->Find("a:1")->AddInflight(3);
  EXPECT_EQ(pool->Route("")->worker->id(), "b:1");
}

TEST_F(WorkerPoolTest, ConversationStaysOnItsHealthyWorker) {
  auto pool = MakePool({"a:1", "b:1"});
  Set("a:1", Load(3));
  Set("b:1", Load(0));
  pool->Refresh();
  auto d = pool->Route("a:1");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->worker->id(), "a:1");
  EXPECT_EQ(d->kind, RouteKind::kSticky);
}

TEST_F(WorkerPoolTest, UnhealthyOverloadedDrainingOrUnknownWorkerFailsOver) {
  auto pool = MakePool({"a:1", "b:1"});
  Set("b:1", Load(0));
  Set("a:1", absl::UnavailableError("crashed"));
  pool->Refresh();
  auto d = pool->Route("a:1");
  EXPECT_EQ(d->worker->id(), "b:1");
  EXPECT_EQ(d->kind, RouteKind::kFailover);

  Set("a:1", Load(4));  // at the overload threshold
  pool->Refresh();
  EXPECT_EQ(pool->Route("a:1")->kind, RouteKind::kFailover);

  WorkerLoad draining = Load(0);
  draining.draining = true;
  Set("a:1", draining);
  pool->Refresh();
  EXPECT_EQ(pool->Route("a:1")->kind, RouteKind::kFailover);
  EXPECT_EQ(pool->Route("a:1")->worker->id(), "b:1");

  EXPECT_EQ(pool->Route("gone:1")->kind, RouteKind::kFailover);
}

TEST_F(WorkerPoolTest, AWorkerStaysHealthyUntilUnhealthyAfterConsecutiveFailedProbes) {
  auto pool = MakePool({"a:1", "b:1"});  // unhealthy_after: the default, 3
  Set("a:1", Load(0));
  Set("b:1", Load(0));
  pool->Refresh();
  Set("a:1", absl::DeadlineExceededError("probe timed out"));
  pool->Refresh();
  pool->Refresh();
  EXPECT_EQ(pool->counts().healthy, 2);  // two misses: still in
  EXPECT_EQ(pool->Route("a:1")->kind, RouteKind::kSticky);
  pool->Refresh();
  EXPECT_EQ(pool->counts().healthy, 1);  // the third consecutive miss takes it out
  EXPECT_EQ(pool->Route("a:1")->kind, RouteKind::kFailover);
}

TEST_F(WorkerPoolTest, ASuccessfulProbeRestoresAWorkerAtOnceAndResetsTheCount) {
  auto pool = MakePool({"a:1", "b:1"});
  Set("b:1", Load(0));
  Set("a:1", absl::UnavailableError("down"));
  for (int i = 0; i < 3; ++i) pool->Refresh();
  EXPECT_EQ(pool->counts().healthy, 1);
  Set("a:1", Load(0));
  pool->Refresh();  // one good probe is enough
  EXPECT_EQ(pool->counts().healthy, 2);
  // The count starts over: two misses after the recovery do not remove it.
  Set("a:1", absl::UnavailableError("down"));
  pool->Refresh();
  Set("a:1", Load(0));
  pool->Refresh();
  Set("a:1", absl::UnavailableError("down"));
  pool->Refresh();
  pool->Refresh();
  EXPECT_EQ(pool->counts().healthy, 2);
}

TEST_F(WorkerPoolTest, UnhealthyAfterOneRemovesAWorkerOnItsFirstFailedProbe) {
  WorkerPoolOptions o;
  o.static_workers = {"a:1", "b:1"};
  o.unhealthy_after = 1;
  auto pool = MakePool(o);
  Set("a:1", Load(0));
  Set("b:1", Load(0));
  pool->Refresh();
  Set("a:1", absl::UnavailableError("down"));
  pool->Refresh();
  EXPECT_EQ(pool->counts().healthy, 1);
}

TEST_F(WorkerPoolTest, AWorkerThatWasNeverHealthyIsNotACandidateBeforeItsFirstGoodProbe) {
  auto pool = MakePool({"a:1", "b:1"});
  Set("b:1", Load(0));
  Set("a:1", absl::UnavailableError("starting"));
  pool->Refresh();
  EXPECT_EQ(pool->counts().healthy, 1);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(pool->Route("")->worker->id(), "b:1");
}

TEST_F(WorkerPoolTest, MarkUnhealthyTakesAWorkerOutUntilItsNextGoodProbe) {
  auto pool = MakePool({"a:1", "b:1"});
  Set("a:1", Load(0));
  Set("b:1", Load(5));
  pool->Refresh();
  pool->MarkUnhealthy("a:1");
  EXPECT_EQ(pool->Route("a:1")->worker->id(), "b:1");
  EXPECT_EQ(pool->counts().healthy, 1);
  pool->Refresh();
  EXPECT_EQ(pool->Route("a:1")->kind, RouteKind::kSticky);
}

TEST_F(WorkerPoolTest, DnsMembershipFollowsResolutionAndSurvivesLookupFailures) {
  auto pool = MakePool({"static:1"}, "workers.svc:50052");
  Set("static:1", Load(9));
  Set("10.0.0.1:50052", Load(0));
  Set("10.0.0.2:50052", Load(0));
  world_.dns = std::vector<std::string>{"10.0.0.1:50052"};
  pool->Refresh();
  EXPECT_NE(pool->Find("10.0.0.1:50052"), nullptr);
  EXPECT_EQ(pool->counts().healthy, 2);

  world_.dns = std::vector<std::string>{"10.0.0.2:50052"};
  pool->Refresh();
  EXPECT_EQ(pool->Find("10.0.0.1:50052"), nullptr);
  EXPECT_NE(pool->Find("10.0.0.2:50052"), nullptr);
  EXPECT_NE(pool->Find("static:1"), nullptr);

  world_.dns = absl::UnavailableError("SERVFAIL");
  pool->Refresh();
  EXPECT_NE(pool->Find("10.0.0.2:50052"), nullptr);
}

TEST_F(WorkerPoolTest, ModelLimitsAreTheSmallestAmongHealthyWorkers) {
  auto pool = MakePool({"a:1", "b:1", "c:1"});
  WorkerLoad small = Load(0);
  small.max_model_len = 2048;
  Set("a:1", Load(0));
  Set("b:1", small);
  pool->Refresh();
  EXPECT_EQ(pool->max_model_len(), 2048u);
  EXPECT_EQ(pool->vocab_size(), 1000u);
}

TEST(DnsResolverTest, ResolvesLocalhost) {
  auto r = NewDnsResolver()->Resolve("localhost:50052");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_FALSE(r->empty());
  for (const auto& a : *r) EXPECT_TRUE(a == "127.0.0.1:50052" || a == "[::1]:50052") << a;
}

}  // namespace
}  // namespace hc::router
