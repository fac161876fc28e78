#include "router/routing/worker_pool.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/token_hash.h"

namespace hc::router {

const char* RouteKindName(RouteKind kind) {
  switch (kind) {
    case RouteKind::kSticky:
      return "sticky";
    case RouteKind::kPlaced:
      return "placed";
    case RouteKind::kFailover:
      return "failover";
  }
  return "placed";
}

Worker::Worker(std::string address, std::shared_ptr<grpc::Channel> channel)
    : address_(std::move(address)),
      channel_(std::move(channel)),
      stub_(channel_ ? hybridcache::v1::WorkerService::NewStub(channel_) : nullptr) {}

WorkerPool::WorkerPool(WorkerPoolOptions options, std::unique_ptr<WorkerProber> prober,
                       std::unique_ptr<Resolver> resolver)
    : options_(std::move(options)), prober_(std::move(prober)), resolver_(std::move(resolver)) {
  std::vector<std::shared_ptr<Worker>> all;
  for (const std::string& address : options_.static_workers) {
    all.push_back(std::make_shared<Worker>(
        address, options_.channel_factory ? options_.channel_factory(address) : nullptr));
  }
  absl::MutexLock lock(&mu_);
  Rebuild(std::move(all));
}

WorkerPool::~WorkerPool() {
  {
    absl::MutexLock lock(&stop_mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void WorkerPool::StartBackgroundRefresh() {
  thread_ = std::thread([this] {
    while (true) {
      Refresh();
      absl::MutexLock lock(&stop_mu_);
      if (stop_mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.refresh_interval)) return;
    }
  });
}

std::shared_ptr<const WorkerPool::Snapshot> WorkerPool::snapshot() const {
  absl::MutexLock lock(&snap_mu_);
  return snap_;
}

void WorkerPool::Rebuild(std::vector<std::shared_ptr<Worker>> all) {
  auto snap = std::make_shared<Snapshot>();
  for (const auto& w : all) {
    snap->by_id[w->id()] = w;
    if (w->healthy() && !w->draining()) snap->candidates.push_back(w);
  }
  snap->all = std::move(all);
  absl::MutexLock lock(&snap_mu_);
  snap_ = std::move(snap);
}

void WorkerPool::Refresh() {
  // Run after every lock is released: they may call back into the pool.
  for (const std::function<void()>& callback : RefreshRound()) callback();
}

std::vector<std::function<void()>> WorkerPool::RefreshRound() {
  // Only refresh rounds wait on refresh_mu_; it is held across the probe so
  // that rounds do not interleave (members and missed_probes_ stay consistent).
  absl::MutexLock round(&refresh_mu_);
  std::vector<std::shared_ptr<Worker>> all = snapshot()->all;
  if (!options_.dns_name.empty() && resolver_ != nullptr) {
    absl::StatusOr<std::vector<std::string>> resolved = resolver_->Resolve(options_.dns_name);
    if (!resolved.ok()) {
      // Keep the last known members: a DNS hiccup is not a worker failure.
      HC_LOG(WARNING) << "cannot resolve " << options_.dns_name << ": " << resolved.status();
    } else {
      const auto old = snapshot();
      std::vector<std::shared_ptr<Worker>> next;
      for (const std::string& address : options_.static_workers) {
        next.push_back(old->by_id.at(address));
      }
      for (const std::string& address : *resolved) {
        if (std::find(options_.static_workers.begin(), options_.static_workers.end(), address) !=
            options_.static_workers.end()) {
          continue;
        }
        auto it = old->by_id.find(address);
        next.push_back(it != old->by_id.end() ? it->second
                                              : std::make_shared<Worker>(
                                                    address, options_.channel_factory
                                                                 ? options_.channel_factory(address)
                                                                 : nullptr));
      }
      all = std::move(next);
    }
  }
  // A failure recorded after this point may be newer than the answer to this
  // round's probe of that worker: such a success must not undo it.
  uint64_t round_start;
  {
    absl::MutexLock lock(&mu_);
    round_start = failures_;
  }
  // Without mu_: MarkUnhealthy, Route and the rest never wait for the probes.
  const std::vector<absl::StatusOr<WorkerLoad>> loads = prober_->ProbeAll(all);
  HC_CHECK(loads.size() == all.size())
      << "prober returned " << loads.size() << " results for " << all.size() << " workers";

  absl::MutexLock lock(&mu_);
  // Rebuilt every round: a success resets a worker's count by leaving it out,
  // and departed members drop out.
  absl::flat_hash_map<std::string, int> missed;
  const int unhealthy_after = std::max(1, options_.unhealthy_after);
  for (size_t i = 0; i < all.size(); ++i) {
    Worker& w = *all[i];
    if (!loads[i].ok()) {
      w.last_failure_.store(++failures_, std::memory_order_relaxed);
      auto it = missed_probes_.find(w.id());
      const int n = (it == missed_probes_.end() ? 0 : it->second) + 1;
      missed[w.id()] = n;
      if (!w.healthy()) continue;
      if (n >= unhealthy_after) {
        HC_LOG(WARNING) << "worker " << w.id() << " unhealthy after " << n
                        << " failed probes: " << loads[i].status();
        w.healthy_.store(false);
      } else {
        HC_LOG(INFO) << "worker " << w.id() << " missed probe " << n << " of " << unhealthy_after
                     << ": " << loads[i].status();
      }
      continue;
    }
    const WorkerLoad& l = *loads[i];
    w.draining_.store(l.draining);
    w.num_waiting_.store(l.num_waiting);
    w.max_waiting_.store(l.max_waiting);
    const auto fraction = [](uint32_t free, uint32_t total) -> uint64_t {
      return total == 0 ? 65536 : uint64_t{free} * 65536 / total;
    };
    w.free_cache_.store(
        static_cast<uint32_t>(std::min(fraction(l.free_kv_blocks, l.total_kv_blocks),
                                       fraction(l.free_mamba_slots, l.total_mamba_slots))));
    w.max_model_len_.store(l.max_model_len);
    w.vocab_size_.store(l.vocab_size);
    if (w.last_failure_.load(std::memory_order_relaxed) > round_start) {
      // A call failed while this probe was in flight: the next round decides.
      continue;
    }
    if (!w.healthy()) HC_LOG(INFO) << "worker " << w.id() << " healthy";
    w.healthy_.store(true);
    ever_healthy_ = true;
  }
  missed_probes_ = std::move(missed);
  Rebuild(std::move(all));
  if (!ever_healthy_) return {};
  return std::exchange(first_healthy_callbacks_, {});
}

void WorkerPool::WhenFirstHealthy(std::function<void()> callback) {
  {
    absl::MutexLock lock(&mu_);
    if (!ever_healthy_) {
      first_healthy_callbacks_.push_back(std::move(callback));
      return;
    }
  }
  callback();
}

bool WorkerPool::ever_healthy() const {
  absl::MutexLock lock(&mu_);
  return ever_healthy_;
}

void WorkerPool::MarkUnhealthy(const std::string& id) {
  // Called from gRPC callback threads: takes only mu_, which is never held
  // across a probe.
  absl::MutexLock lock(&mu_);
  const auto snap = snapshot();
  auto it = snap->by_id.find(id);
  if (it == snap->by_id.end()) return;
  Worker& w = *it->second;
  w.last_failure_.store(++failures_, std::memory_order_relaxed);
  if (!w.healthy()) return;
  HC_LOG(WARNING) << "worker " << id << " unhealthy: a call to it failed";
  w.healthy_.store(false);
  Rebuild(snap->all);
}

std::shared_ptr<Worker> WorkerPool::Find(const std::string& id) const {
  const auto snap = snapshot();
  auto it = snap->by_id.find(id);
  return it == snap->by_id.end() ? nullptr : it->second;
}

bool WorkerPool::Better(const Worker& a, const Worker& b) const {
  const int64_t wa = int64_t{a.num_waiting()} + a.inflight();
  const int64_t wb = int64_t{b.num_waiting()} + b.inflight();
  if (wa != wb) return wa < wb;
  return a.free_cache() > b.free_cache();
}

bool WorkerPool::AtBound(const Worker& w) const {
  const int64_t inflight = w.inflight();
  if (options_.max_inflight_per_worker > 0 &&
      inflight >= int64_t{options_.max_inflight_per_worker}) {
    return true;
  }
  const uint32_t max_waiting = w.max_waiting();
  return max_waiting > 0 && int64_t{w.num_waiting()} + inflight >= int64_t{max_waiting};
}

absl::Status WorkerPool::AllAtBound(size_t n) {
  return absl::ResourceExhaustedError(
      absl::StrCat("all ", n,
                   " workers are at their admission bound (the max_waiting they "
                   "report, or this router's max_inflight_per_worker); retry later"));
}

absl::StatusOr<RouteDecision> WorkerPool::Route(const std::string& current) const {
  absl::StatusOr<RouteDecision> d = Choose(current);
  // A failover that lands on the holder again (the only candidate, or the
  // draw picked it) is sticky: its committed state is there. As a failover the
  // turn would resend and recompute the whole history on the same worker.
  if (d.ok() && d->kind == RouteKind::kFailover && d->worker->id() == current) {
    d->kind = RouteKind::kSticky;
  }
  return d;
}

absl::StatusOr<RouteDecision> WorkerPool::Choose(const std::string& current) const {
  const auto snap = snapshot();
  RouteKind kind = RouteKind::kPlaced;
  if (!current.empty()) {
    auto it = snap->by_id.find(current);
    if (it != snap->by_id.end()) {
      const Worker& w = *it->second;
      if (w.healthy() && !w.draining() &&
          int64_t{w.num_waiting()} + w.inflight() < int64_t{options_.overload_waiting} &&
          !AtBound(w)) {
        return RouteDecision{it->second, RouteKind::kSticky};
      }
    }
    kind = RouteKind::kFailover;
  }
  const auto& c = snap->candidates;
  if (c.empty()) return RouteWithoutHealthyWorker(*snap, current, kind);
  if (c.size() == 1) {
    if (AtBound(*c[0])) return AllAtBound(1);
    return RouteDecision{c[0], kind};
  }
  const uint64_t r = MixHash64(options_.seed + draws_.fetch_add(1, std::memory_order_relaxed));
  const size_t n = c.size();
  const size_t i = r % n;
  const size_t j = (i + 1 + (r >> 32) % (n - 1)) % n;  // distinct from i
  const bool room_i = !AtBound(*c[i]);
  const bool room_j = !AtBound(*c[j]);
  if (room_i && room_j) return RouteDecision{Better(*c[j], *c[i]) ? c[j] : c[i], kind};
  if (room_i) return RouteDecision{c[i], kind};
  if (room_j) return RouteDecision{c[j], kind};
  // Slow path, O(workers): both draws are full; take the best with room.
  std::shared_ptr<Worker> best;
  for (const auto& w : c) {
    if (!AtBound(*w) && (best == nullptr || Better(*w, *best))) best = w;
  }
  if (best == nullptr) return AllAtBound(n);
  return RouteDecision{best, kind};
}

absl::StatusOr<RouteDecision> WorkerPool::RouteWithoutHealthyWorker(const Snapshot& snap,
                                                                    const std::string& current,
                                                                    RouteKind kind) const {
  // Every probe may have failed because the router itself is starved (CPU
  // load), not the workers: trying one beats refusing the turn. The worker
  // whose last failure is the oldest is the likeliest to have recovered, and a
  // failed call moves it to the back (MarkUnhealthy), so retries rotate.
  std::shared_ptr<Worker> best;
  size_t not_draining = 0;
  for (const auto& w : snap.all) {
    if (w->draining()) continue;
    ++not_draining;
    if (AtBound(*w)) continue;
    if (best == nullptr || w->last_failure_.load(std::memory_order_relaxed) <
                               best->last_failure_.load(std::memory_order_relaxed)) {
      best = w;
    }
  }
  if (best == nullptr && not_draining > 0) return AllAtBound(not_draining);
  if (best == nullptr) {
    return absl::UnavailableError(
        snap.all.empty()
            ? "no healthy worker: no worker is known"
            : absl::StrCat("no healthy worker: all ", snap.all.size(), " workers are draining"));
  }
  return RouteDecision{best, kind};  // Route makes it sticky when best is the holder
}

WorkerPool::Counts WorkerPool::counts() const {
  const auto snap = snapshot();
  Counts c;
  for (const auto& w : snap->all) (w->healthy() ? c.healthy : c.unhealthy)++;
  return c;
}

uint32_t WorkerPool::max_model_len() const {
  uint32_t m = 0;
  for (const auto& w : snapshot()->candidates) {
    const uint32_t v = w->max_model_len_.load();
    if (v > 0 && (m == 0 || v < m)) m = v;
  }
  return m;
}

uint32_t WorkerPool::vocab_size() const {
  uint32_t m = 0;
  for (const auto& w : snapshot()->candidates) {
    const uint32_t v = w->vocab_size_.load();
    if (v > 0 && (m == 0 || v < m)) m = v;
  }
  return m;
}

}  // namespace hc::router
