// Routing policy against fake probes and a fake resolver: no network, no
// sleeps (Refresh is called synchronously).
#include "router/routing/worker_pool.h"

#include <map>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/notification.h"
#include "common/server.h"
#include "gtest/gtest.h"

namespace hc::router {
namespace {

// Probe results the test sets per address; unknown addresses are unhealthy.
struct FakeWorld {
  absl::Mutex mu;
  std::map<std::string, absl::StatusOr<WorkerLoad>> loads ABSL_GUARDED_BY(mu);
  absl::StatusOr<std::vector<std::string>> dns ABSL_GUARDED_BY(mu) = std::vector<std::string>{};
  // When set, the next ProbeAll reads its results, notifies `entered` and
  // blocks until `release` (a probe round the test holds in flight).
  absl::Notification* entered ABSL_GUARDED_BY(mu) = nullptr;
  absl::Notification* release ABSL_GUARDED_BY(mu) = nullptr;
};

class FakeProber : public WorkerProber {
 public:
  explicit FakeProber(FakeWorld* world) : world_(world) {}
  std::vector<absl::StatusOr<WorkerLoad>> ProbeAll(
      const std::vector<std::shared_ptr<Worker>>& workers) override {
    std::vector<absl::StatusOr<WorkerLoad>> out;
    absl::Notification* entered;
    absl::Notification* release;
    {
      absl::MutexLock lock(&world_->mu);
      for (const auto& w : workers) {
        auto it = world_->loads.find(w->id());
        out.push_back(it == world_->loads.end() ? absl::UnavailableError("down") : it->second);
      }
      entered = std::exchange(world_->entered, nullptr);
      release = std::exchange(world_->release, nullptr);
    }
    if (entered != nullptr) entered->Notify();
    if (release != nullptr) release->WaitForNotification();
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

// The id of the worker Route picks, or its error as text (so that a wrong
// answer fails the expectation instead of aborting the test).
std::string Picked(const WorkerPool& pool, const std::string& current = "") {
  absl::StatusOr<RouteDecision> d = pool.Route(current);
  return d.ok() ? d->worker->id() : d.status().ToString();
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
  void SetDns(absl::StatusOr<std::vector<std::string>> dns) {
    absl::MutexLock lock(&world_.mu);
    world_.dns = std::move(dns);
  }
  // The next probe round reads its results and then waits for `release`.
  void HoldNextProbe(absl::Notification* entered, absl::Notification* release) {
    absl::MutexLock lock(&world_.mu);
    world_.entered = entered;
    world_.release = release;
  }
  FakeWorld world_;
};

TEST_F(WorkerPoolTest, NoWorkerAtAllIsUnavailable) {
  auto pool = MakePool(std::vector<std::string>{});
  pool->Refresh();
  const auto d = pool->Route("");
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(d.status().message().find("no healthy worker"), std::string::npos) << d.status();
}

TEST_F(WorkerPoolTest, WithNoHealthyWorkerTheLeastRecentlyFailedIsTried) {
  auto pool = MakePool({"a:1", "b:1", "c:1"});
  Set("a:1", Load(0));
  Set("b:1", Load(0));
  Set("c:1", Load(0));
  pool->Refresh();
  pool->MarkUnhealthy("b:1");
  pool->MarkUnhealthy("a:1");
  pool->MarkUnhealthy("c:1");
  EXPECT_EQ(pool->counts().healthy, 0);
  auto d = pool->Route("");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->worker->id(), "b:1");
  EXPECT_EQ(d->kind, RouteKind::kPlaced);
  d = pool->Route("c:1");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->kind, RouteKind::kFailover);
  d = pool->Route("b:1");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->kind, RouteKind::kSticky);  // it holds the state, if any worker does
  pool->MarkUnhealthy("b:1");              // failed again: now a:1's failure is the oldest
  EXPECT_EQ(Picked(*pool, ""), "a:1");
}

TEST_F(WorkerPoolTest, WithNoHealthyWorkerFailedProbesCountAsFailuresToo) {
  WorkerPoolOptions o;
  o.static_workers = {"a:1", "b:1"};
  o.unhealthy_after = 1;
  auto pool = MakePool(o);
  pool->Refresh();  // neither answers: a:1 failed first
  EXPECT_EQ(pool->counts().healthy, 0);
  EXPECT_EQ(Picked(*pool, ""), "a:1");
  pool->MarkUnhealthy("a:1");  // the call failed too
  EXPECT_EQ(Picked(*pool, ""), "b:1");
  pool->Refresh();  // both fail again, a:1 first
  EXPECT_EQ(Picked(*pool, ""), "a:1");
}

TEST_F(WorkerPoolTest, WithNoHealthyWorkerDrainingWorkersAreNotTried) {
  auto pool = MakePool({"a:1", "b:1"});
  WorkerLoad draining = Load(0);
  draining.draining = true;
  Set("a:1", draining);
  Set("b:1", Load(0));
  pool->Refresh();
  pool->MarkUnhealthy("b:1");  // a:1 is healthy but draining, and never failed
  EXPECT_EQ(Picked(*pool, "a:1"), "b:1");
  Set("b:1", draining);
  pool->Refresh();
  pool->MarkUnhealthy("b:1");
  const auto d = pool->Route("");
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(d.status().message().find("no healthy worker"), std::string::npos) << d.status();
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

// MarkUnhealthy is called from gRPC callback threads (a failed Execute): it
// must not wait for a probe round, which can take the whole probe timeout.
TEST_F(WorkerPoolTest, MarkUnhealthyAndRouteDoNotWaitForAProbeRoundInFlight) {
  auto pool = MakePool({"a:1", "b:1"});
  Set("a:1", Load(0));
  Set("b:1", Load(0));
  pool->Refresh();
  absl::Notification entered, release;
  HoldNextProbe(&entered, &release);
  std::thread refresh([&] { pool->Refresh(); });
  entered.WaitForNotification();

  absl::Notification marked;
  std::thread mark([&] {
    pool->MarkUnhealthy("a:1");
    marked.Notify();
  });
  // A timeout here means MarkUnhealthy waited for the round (the test then
  // releases it so that it fails instead of hanging).
  const bool returned = marked.WaitForNotificationWithTimeout(absl::Seconds(10));
  EXPECT_TRUE(returned) << "MarkUnhealthy waited for the probe round in flight";
  if (returned) {
    EXPECT_EQ(pool->counts().healthy, 1);
    EXPECT_EQ(pool->Route("a:1")->worker->id(), "b:1");
    EXPECT_NE(pool->Find("a:1"), nullptr);
    EXPECT_EQ(pool->max_model_len(), 4096u);
  }
  release.Notify();
  refresh.join();
  mark.join();
}

// A probe sent before a call failed may have been answered before the failure:
// its success must not put the worker back. The next round's may.
TEST_F(WorkerPoolTest, AProbeSentBeforeAFailedCallDoesNotRestoreTheWorker) {
  auto pool = MakePool({"a:1", "b:1"});
  Set("a:1", Load(0));
  Set("b:1", Load(0));
  pool->Refresh();
  absl::Notification entered, release;
  HoldNextProbe(&entered, &release);
  std::thread refresh([&] { pool->Refresh(); });
  entered.WaitForNotification();  // the round's results (a:1 healthy) are taken
  absl::Notification marked;
  std::thread mark([&] {
    pool->MarkUnhealthy("a:1");
    marked.Notify();
  });
  const bool marked_during_round = marked.WaitForNotificationWithTimeout(absl::Seconds(10));
  release.Notify();
  mark.join();
  refresh.join();
  ASSERT_TRUE(marked_during_round) << "MarkUnhealthy waited for the probe round in flight";
  EXPECT_EQ(pool->counts().healthy, 1);
  EXPECT_EQ(pool->Route("a:1")->kind, RouteKind::kFailover);
  pool->Refresh();  // sent after the failure
  EXPECT_EQ(pool->counts().healthy, 2);
  EXPECT_EQ(pool->Route("a:1")->kind, RouteKind::kSticky);
}

TEST_F(WorkerPoolTest, DnsMembershipFollowsResolutionAndSurvivesLookupFailures) {
  auto pool = MakePool({"static:1"}, "workers.svc:50052");
  Set("static:1", Load(9));
  Set("10.0.0.1:50052", Load(0));
  Set("10.0.0.2:50052", Load(0));
  SetDns(std::vector<std::string>{"10.0.0.1:50052"});
  pool->Refresh();
  EXPECT_NE(pool->Find("10.0.0.1:50052"), nullptr);
  EXPECT_EQ(pool->counts().healthy, 2);

  SetDns(std::vector<std::string>{"10.0.0.2:50052"});
  pool->Refresh();
  EXPECT_EQ(pool->Find("10.0.0.1:50052"), nullptr);
  EXPECT_NE(pool->Find("10.0.0.2:50052"), nullptr);
  EXPECT_NE(pool->Find("static:1"), nullptr);

  SetDns(absl::UnavailableError("SERVFAIL"));
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

// Readiness: the router reports SERVING once a worker has been healthy.
TEST_F(WorkerPoolTest, WhenFirstHealthyRunsOnceWhenAProbeFirstSucceeds) {
  auto pool = MakePool({"a:1", "b:1"});
  int calls = 0;
  pool->WhenFirstHealthy([&] { ++calls; });
  pool->Refresh();  // both still starting
  EXPECT_EQ(calls, 0);
  EXPECT_FALSE(pool->ever_healthy());
  Set("b:1", Load(0));
  pool->Refresh();
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(pool->ever_healthy());
  Set("a:1", Load(0));
  pool->Refresh();
  EXPECT_EQ(calls, 1);
}

TEST_F(WorkerPoolTest, EverHealthyStaysTrueWhenEveryWorkerGoesDownLater) {
  auto pool = MakePool({"a:1"});
  Set("a:1", Load(0));
  pool->Refresh();
  pool->MarkUnhealthy("a:1");
  Set("a:1", absl::UnavailableError("down"));
  for (int i = 0; i < 3; ++i) pool->Refresh();
  EXPECT_EQ(pool->counts().healthy, 0);
  EXPECT_TRUE(pool->ever_healthy());  // readiness does not flap with worker health
  int calls = 0;
  pool->WhenFirstHealthy([&] { ++calls; });  // registered late: runs at once
  EXPECT_EQ(calls, 1);
}

TEST_F(WorkerPoolTest, AProbeRoundSuppressedByAFailedCallDoesNotCountAsHealthy) {
  auto pool = MakePool({"a:1"});
  Set("a:1", Load(0));
  absl::Notification entered, release;
  HoldNextProbe(&entered, &release);
  std::thread refresh([&] { pool->Refresh(); });
  entered.WaitForNotification();
  pool->MarkUnhealthy("a:1");  // e.g. a turn routed to it before it was ever healthy
  release.Notify();
  refresh.join();
  EXPECT_FALSE(pool->ever_healthy());
  pool->Refresh();
  EXPECT_TRUE(pool->ever_healthy());
}

// The callback may call back into the pool (it runs without the pool's locks).
TEST_F(WorkerPoolTest, WhenFirstHealthyCallbackMayUseThePool) {
  auto pool = MakePool({"a:1"});
  WorkerPool::Counts seen;
  pool->WhenFirstHealthy([&] {
    seen = pool->counts();
    pool->Refresh();
  });
  Set("a:1", Load(0));
  pool->Refresh();
  EXPECT_EQ(seen.healthy, 1);
}

// Admission bounds (LoadReport.max_waiting, the router's
// max_inflight_per_worker): placement never picks a worker at its bound.
WorkerLoad Bounded(uint32_t waiting, uint32_t max_waiting) {
  WorkerLoad l = Load(waiting);
  l.max_waiting = max_waiting;
  return l;
}

// An overloaded holder fails over, but a failover that lands on the holder
// itself (the only candidate, or the draw of two picked it again) is sticky:
// its committed state is there, and routing it as a failover made the turn
// resend the whole history and recompute it (found by a soak of 30 concurrent
// conversations on one worker: 53 of 150 turns recomputed).
TEST_F(WorkerPoolTest, AFailoverThatLandsOnTheHolderIsSticky) {
  auto pool = MakePool({"a:1"});
  Set("a:1", Load(4));  // at the overload threshold (4): fails over...
  pool->Refresh();
  auto d = pool->Route("a:1");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->worker->id(), "a:1");  // ... to the only worker there is
  EXPECT_EQ(d->kind, RouteKind::kSticky);

  auto two = MakePool({"a:1", "b:1"});
  Set("a:1", Load(4));
  Set("b:1", Load(9));  // busier: the draw keeps a:1
  two->Refresh();
  for (int i = 0; i < 20; ++i) {
    d = two->Route("a:1");
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->kind, d->worker->id() == "a:1" ? RouteKind::kSticky : RouteKind::kFailover);
  }
  EXPECT_EQ(two->Route("b:1")->kind, RouteKind::kFailover);  // b:1 overloaded, a:1 better
}

TEST_F(WorkerPoolTest, StickyWorkerAtItsAdmissionBoundFailsOverToAWorkerWithRoom) {
  auto pool = MakePool({"a:1", "b:1"});  // overload_waiting 4: not what moves it here
  Set("a:1", Bounded(1, 2));
  Set("b:1", Bounded(0, 2));
  pool->Refresh();
  auto d = pool->Route("a:1");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->kind, RouteKind::kSticky);
  pool->Find("a:1")->AddInflight(1);  // reported 1 waiting + 1 in flight = its bound 2
  d = pool->Route("a:1");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->worker->id(), "b:1");
  EXPECT_EQ(d->kind, RouteKind::kFailover);
}

TEST_F(WorkerPoolTest, PlacementNeverPicksAWorkerAtItsBoundEvenWhenItLooksLeastLoaded) {
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back("w" + std::to_string(i) + ":1");
  auto pool = MakePool(ids);
  Set(ids[0], Bounded(1, 1));  // fewest waiting, but full
  for (int i = 1; i < 10; ++i) Set(ids[i], Load(2));
  pool->Refresh();
  for (int i = 0; i < 500; ++i) EXPECT_NE(Picked(*pool), "w0:1");
}

TEST_F(WorkerPoolTest, WhenBothDrawsAreAtTheirBoundTheWorkerWithRoomIsFound) {
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back("w" + std::to_string(i) + ":1");
  auto pool = MakePool(ids);
  for (int i = 0; i < 10; ++i) Set(ids[i], Bounded(3, 3));
  Set("w7:1", Bounded(2, 3));
  pool->Refresh();
  for (int i = 0; i < 200; ++i) EXPECT_EQ(Picked(*pool), "w7:1");
  EXPECT_EQ(Picked(*pool, "w3:1"), "w7:1");
}

TEST_F(WorkerPoolTest, EveryHealthyWorkerAtItsBoundIsResourceExhausted) {
  auto pool = MakePool({"a:1", "b:1", "c:1"});
  Set("a:1", Bounded(2, 2));
  Set("b:1", Bounded(5, 3));  // a stale report may exceed the bound
  pool->Refresh();            // c:1 is down: not counted
  for (const std::string current : {"", "a:1", "c:1"}) {
    const auto d = pool->Route(current);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kResourceExhausted) << d.status();
    EXPECT_NE(d.status().message().find("all 2 workers are at their admission bound"),
              std::string::npos)
        << d.status();
  }
  Set("a:1", Bounded(1, 2));  // a turn finished on a:1
  pool->Refresh();
  EXPECT_EQ(Picked(*pool), "a:1");
}

TEST_F(WorkerPoolTest, WorkersThatReportNoBoundAreNeverAtOne) {
  auto pool = MakePool({"a:1", "b:1"});
  Set("a:1", Bounded(1000, 0));
  Set("b:1", Bounded(2000, 0));
  pool->Refresh();
  pool->Find("a:1")->AddInflight(500);
  EXPECT_EQ(Picked(*pool), "a:1");
  EXPECT_EQ(Picked(*pool, "b:1"), "a:1");  // overloaded (overload_waiting): moves, not refused
}

TEST_F(WorkerPoolTest, MaxInflightPerWorkerCapsThisRoutersTurnsOnEachWorker) {
  WorkerPoolOptions o;
  o.static_workers = {"a:1", "b:1"};
  o.max_inflight_per_worker = 2;
  auto pool = MakePool(o);
  Set("a:1", Load(0));
  Set("b:1", Load(0));
  pool->Refresh();
  pool->Find("a:1")->AddInflight(1);
  EXPECT_EQ(Picked(*pool, "a:1"), "a:1");  // sticky, below the cap
  pool->Find("a:1")->AddInflight(1);
  auto d = pool->Route("a:1");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->worker->id(), "b:1");
  EXPECT_EQ(d->kind, RouteKind::kFailover);
  pool->Find("b:1")->AddInflight(2);
  EXPECT_EQ(pool->Route("").status().code(), absl::StatusCode::kResourceExhausted);
  pool->Find("b:1")->AddInflight(-1);  // one finished
  EXPECT_EQ(Picked(*pool), "b:1");
}

TEST_F(WorkerPoolTest, WithNoHealthyWorkerTheFallbackSkipsWorkersAtTheirBound) {
  WorkerPoolOptions o;
  o.static_workers = {"a:1", "b:1"};
  o.max_inflight_per_worker = 1;
  o.unhealthy_after = 1;
  auto pool = MakePool(o);
  pool->Refresh();  // both down; a:1 failed first
  pool->Find("a:1")->AddInflight(1);
  EXPECT_EQ(Picked(*pool), "b:1");
  pool->Find("b:1")->AddInflight(1);
  EXPECT_EQ(pool->Route("").status().code(), absl::StatusCode::kResourceExhausted);
}

// A LoadRequest answered with fixed numbers, served for GrpcProber.
class LoadOnlyWorker final : public hybridcache::v1::WorkerService::Service {
 public:
  grpc::Status Load(grpc::ServerContext*, const hybridcache::v1::LoadRequest*,
                    hybridcache::v1::LoadReport* report) override {
    report->set_num_waiting(2);
    report->set_max_waiting(7);
    report->set_max_model_len(4096);
    return grpc::Status::OK;
  }
};

TEST(GrpcProberTest, ReportsTheWorkersAdmissionBound) {
  LoadOnlyWorker service;
  auto server =
      GrpcServer::Start({}, {{&service, hybridcache::v1::WorkerService::service_full_name()}});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();
  auto worker = std::make_shared<Worker>(address, NewWorkerChannel(address));
  const auto loads = NewGrpcProber(absl::Seconds(30))->ProbeAll({worker});
  ASSERT_EQ(loads.size(), 1u);
  ASSERT_TRUE(loads[0].ok()) << loads[0].status();
  EXPECT_EQ(loads[0]->num_waiting, 2u);
  EXPECT_EQ(loads[0]->max_waiting, 7u);
  EXPECT_EQ(loads[0]->max_model_len, 4096u);
}

TEST(DnsResolverTest, ResolvesLocalhost) {
  auto r = NewDnsResolver()->Resolve("localhost:50052");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_FALSE(r->empty());
  for (const auto& a : *r) EXPECT_TRUE(a == "127.0.0.1:50052" || a == "[::1]:50052") << a;
}

}  // namespace
}  // namespace hc::router
