// The router's view of its workers: membership (static addresses and/or a
// DNS name re-resolved on every refresh), health and load (polled by a
// WorkerProber), and the routing decision for a turn.
//
// Routing (Route): a conversation whose worker is known, healthy, not draining,
// not past the overload threshold and not at its admission bound stays there
// (sticky). Otherwise it is placed on the better of two healthy workers drawn
// at random (power of two choices): fewer waiting requests (the worker's
// report plus turns this router sent since), then more free cache. A
// conversation that had a worker and moves is a failover: the caller sends the
// full history. Placement that lands on the conversation's own worker (an
// overloaded holder that is the only candidate, or drawn again) is sticky.
//
// Admission bounds: a worker is at its bound when its reported num_waiting
// plus this router's in-flight turns on it reach the max_waiting it reports
// (it would refuse the turn with RESOURCE_EXHAUSTED), or when this router's
// in-flight turns on it reach max_inflight_per_worker. Placement never picks a
// worker at its bound (a draw at its bound yields to the other; when both are,
// the best worker with room is searched for); a sticky worker at its bound
// fails over. RESOURCE_EXHAUSTED ("all N workers are at their admission
// bound") when no healthy worker has room.
//
// No healthy worker: Route answers the worker whose last failure (failed
// probe or failed call) is the oldest among those not draining and not at
// their bound; workers that never failed come first. The turn is tried there
// rather than refused, since probes can all fail at once when the router
// itself is starved of CPU; a failed call (MarkUnhealthy) sends the next
// attempt to the next worker. UNAVAILABLE ("no healthy worker") only when no
// worker is known or every worker is draining; RESOURCE_EXHAUSTED when the
// rest are all at their bound.
//
// Health: a worker becomes healthy on its first successful probe and
// unhealthy after `unhealthy_after` consecutive failed probes (a probe that
// times out once under CPU load is no reason to drop it), or at once when a
// real call to it fails at the connection level (MarkUnhealthy). One
// successful probe makes it healthy again and resets the count.
//
// Cost: Route reads an immutable snapshot (rebuilt only when membership or
// health changes) and per-worker atomics, so it is O(1) in the number of
// workers. Two slow paths scan the workers: no healthy worker, and both
// random draws at their bound.
//
// Thread-safety: all methods are thread-safe.
#ifndef HC_ROUTER_ROUTING_WORKER_POOL_H_
#define HC_ROUTER_ROUTING_WORKER_POOL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/tls.h"
#include "grpcpp/channel.h"
#include "hybridcache/v1/worker.grpc.pb.h"

namespace hc::router {

// What a probe learned about a worker (from its LoadReport).
struct WorkerLoad {
  uint32_t num_running = 0;
  uint32_t num_waiting = 0;
  uint32_t free_kv_blocks = 0;
  uint32_t total_kv_blocks = 0;
  uint32_t free_mamba_slots = 0;
  uint32_t total_mamba_slots = 0;
  bool draining = false;
  uint32_t max_model_len = 0;
  uint32_t vocab_size = 0;
  // Admission bound: the worker refuses Execute (RESOURCE_EXHAUSTED) once
  // this many turns wait. 0: unbounded.
  uint32_t max_waiting = 0;
};

// One worker. Identity is its address "host:port", which is also the
// worker_id the router records in the ledger.
class Worker {
 public:
  Worker(std::string address, std::shared_ptr<grpc::Channel> channel);
  const std::string& id() const { return address_; }
  // Null when the pool has no channel factory (tests, benchmarks).
  hybridcache::v1::WorkerService::Stub* stub() const { return stub_.get(); }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  bool healthy() const { return healthy_.load(std::memory_order_relaxed); }
  bool draining() const { return draining_.load(std::memory_order_relaxed); }
  uint32_t num_waiting() const { return num_waiting_.load(std::memory_order_relaxed); }
  // The worker's reported admission bound (WorkerLoad::max_waiting; 0: none).
  uint32_t max_waiting() const { return max_waiting_.load(std::memory_order_relaxed); }
  // Free cache in parts per 65536 (min of the KV and Mamba fractions).
  uint32_t free_cache() const { return free_cache_.load(std::memory_order_relaxed); }
  // Turns this router has in flight on the worker (updated by the service).
  int inflight() const { return inflight_.load(std::memory_order_relaxed); }
  void AddInflight(int delta) { inflight_.fetch_add(delta, std::memory_order_relaxed); }

 private:
  friend class WorkerPool;
  const std::string address_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<hybridcache::v1::WorkerService::Stub> stub_;
  std::atomic<bool> healthy_{false};
  std::atomic<bool> draining_{false};
  std::atomic<uint32_t> num_waiting_{0};
  std::atomic<uint32_t> max_waiting_{0};
  std::atomic<uint32_t> free_cache_{0};
  std::atomic<int> inflight_{0};
  std::atomic<uint32_t> max_model_len_{0};
  std::atomic<uint32_t> vocab_size_{0};
  // WorkerPool's failure count at this worker's latest failed probe or call
  // (0: none yet). Written under WorkerPool::mu_.
  std::atomic<uint64_t> last_failure_{0};
};

// Health and load of a batch of workers. The gRPC one polls grpc.health.v1
// Check and WorkerService.Load; tests inject fakes.
class WorkerProber {
 public:
  virtual ~WorkerProber() = default;
  // One result per worker, in order: its load when healthy (SERVING and Load
  // answered), an error otherwise.
  virtual std::vector<absl::StatusOr<WorkerLoad>> ProbeAll(
      const std::vector<std::shared_ptr<Worker>>& workers) = 0;
};

// "host:port" -> the addresses it resolves to, as "ip:port".
class Resolver {
 public:
  virtual ~Resolver() = default;
  virtual absl::StatusOr<std::vector<std::string>> Resolve(const std::string& host_port) = 0;
};

std::unique_ptr<WorkerProber> NewGrpcProber(absl::Duration timeout);
std::unique_ptr<Resolver> NewDnsResolver();  // getaddrinfo
// Plaintext channels with the router's client settings.
std::shared_ptr<grpc::Channel> NewWorkerChannel(const std::string& address);
// The same settings over `security` (common/tls.h: TLS, the router's client
// certificate, the name the workers' certificates carry), for
// WorkerPoolOptions::channel_factory. Every channel shares the credentials,
// and so one watcher of the certificate files.
std::function<std::shared_ptr<grpc::Channel>(const std::string&)> NewWorkerChannelFactory(
    ChannelSecurity security);

enum class RouteKind { kSticky = 0, kPlaced = 1, kFailover = 2 };
const char* RouteKindName(RouteKind kind);

struct RouteDecision {
  std::shared_ptr<Worker> worker;
  RouteKind kind = RouteKind::kPlaced;
};

struct WorkerPoolOptions {
  std::vector<std::string> static_workers;  // "host:port"
  std::string dns_name;                     // "host:port", re-resolved per refresh
  // A sticky worker with at least this many waiting requests (its report plus
  // this router's in-flight turns) counts as overloaded.
  uint32_t overload_waiting = 16;
  // A worker becomes unhealthy after this many consecutive failed probes (one
  // slow probe under CPU load must not take every worker out at once); values
  // below 1 count as 1. A failed real call (MarkUnhealthy) takes it out at once.
  int unhealthy_after = 3;
  // This router's own cap on its in-flight turns per worker (0: none), for
  // workers that report no admission bound; see Route.
  uint32_t max_inflight_per_worker = 0;
  absl::Duration refresh_interval = absl::Seconds(1);
  uint64_t seed = 0x5eed;
  // Channel per worker; null: workers have no stub.
  std::function<std::shared_ptr<grpc::Channel>(const std::string&)> channel_factory;
};

class WorkerPool {
 public:
  // `prober` and `resolver` (may be null without dns_name) are owned.
  WorkerPool(WorkerPoolOptions options, std::unique_ptr<WorkerProber> prober,
             std::unique_ptr<Resolver> resolver);
  ~WorkerPool();  // Stops the refresh thread.

  // One synchronous refresh: re-resolve, then probe every worker (up to the
  // prober's timeout), then apply the results. Rounds are serialised; no other
  // method waits for one.
  void Refresh();
  // Refreshes every refresh_interval on a background thread until destroyed.
  void StartBackgroundRefresh();

  // Readiness. `callback` runs once, when a worker has been healthy (a probe
  // succeeded) for the first time: at once on the calling thread if one
  // already has, else on the thread whose Refresh first sees one, after that
  // round, without any of the pool's locks held (it may call the pool). A
  // callback still pending when the pool is destroyed never runs.
  void WhenFirstHealthy(std::function<void()> callback);
  // Whether a worker has ever been healthy. It stays true when every worker
  // goes down later: readiness must not flap with worker health (Route still
  // tries the least recently failed worker).
  bool ever_healthy() const;

  // Where a turn goes; `current` is the ledger's worker ("" for none). See the
  // file comment for the policy. With no healthy worker it still answers the
  // least recently failed worker that is not draining; UNAVAILABLE ("no
  // healthy worker") only when there is no worker at all or every worker is
  // draining.
  absl::StatusOr<RouteDecision> Route(const std::string& current) const;

  // Marks a worker unhealthy at once (an Execute answered UNAVAILABLE). Never
  // waits for a probe round: callable from any thread, gRPC callbacks
  // included. A probe round that was already in flight does not restore the
  // worker (its probe may have been answered before the failure); the next
  // round's successful probe does.
  void MarkUnhealthy(const std::string& id);

  // The worker with this id, if known.
  std::shared_ptr<Worker> Find(const std::string& id) const;

  struct Counts {
    int healthy = 0;
    int unhealthy = 0;
  };
  Counts counts() const;
  // Smallest max_model_len / vocab_size reported by a healthy worker (0: none).
  uint32_t max_model_len() const;
  uint32_t vocab_size() const;

 private:
  struct Snapshot {
    std::vector<std::shared_ptr<Worker>> all;
    std::vector<std::shared_ptr<Worker>> candidates;  // healthy, not draining
    absl::flat_hash_map<std::string, std::shared_ptr<Worker>> by_id;
  };
  std::shared_ptr<const Snapshot> snapshot() const;
  void Rebuild(std::vector<std::shared_ptr<Worker>> all) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Refresh without its callbacks: returns the WhenFirstHealthy callbacks due.
  std::vector<std::function<void()>> RefreshRound() ABSL_LOCKS_EXCLUDED(refresh_mu_, mu_);
  bool Better(const Worker& a, const Worker& b) const;
  // Whether placement must skip `w`: its reported waiting turns plus this
  // router's in flight reach its max_waiting, or this router's in-flight turns
  // on it reach max_inflight_per_worker.
  bool AtBound(const Worker& w) const;
  static absl::Status AllAtBound(size_t n);
  // Route's choice before a failover back to the holder is made sticky.
  absl::StatusOr<RouteDecision> Choose(const std::string& current) const;
  // Route's slow path when no worker is a candidate (O(workers)).
  absl::StatusOr<RouteDecision> RouteWithoutHealthyWorker(const Snapshot& snap,
                                                          const std::string& current,
                                                          RouteKind kind) const;

  const WorkerPoolOptions options_;
  const std::unique_ptr<WorkerProber> prober_;
  const std::unique_ptr<Resolver> resolver_;
  mutable std::atomic<uint64_t> draws_{0};

  // Lock order: refresh_mu_, mu_, snap_mu_.
  // Serialises refresh rounds and is held across the probe; nothing else
  // takes it, so no caller of Route / MarkUnhealthy / ... waits for a probe.
  absl::Mutex refresh_mu_;
  // Consecutive failed probes per worker id (absent: the last probe succeeded).
  absl::flat_hash_map<std::string, int> missed_probes_ ABSL_GUARDED_BY(refresh_mu_);
  // Short critical sections only (never across I/O): health changes, the
  // failure sequence and snapshot rebuilds.
  mutable absl::Mutex mu_;
  // Counts failures (probe or call); a worker's last_failure_ is this
  // counter's value at its latest failure.
  uint64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  bool ever_healthy_ ABSL_GUARDED_BY(mu_) = false;
  // Pending WhenFirstHealthy callbacks (empty once ever_healthy_).
  std::vector<std::function<void()>> first_healthy_callbacks_ ABSL_GUARDED_BY(mu_);
  mutable absl::Mutex snap_mu_;
  std::shared_ptr<const Snapshot> snap_ ABSL_GUARDED_BY(snap_mu_);

  absl::Mutex stop_mu_;
  bool stop_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread thread_;
};

}  // namespace hc::router

#endif  // HC_ROUTER_ROUTING_WORKER_POOL_H_
