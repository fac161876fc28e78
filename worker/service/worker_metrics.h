// Prometheus metrics of a worker (the contract: docs/architecture.md), fed by the
// engine through EngineMetricsSink.
//
// Thread-safety: prometheus-cpp metrics are thread-safe; the sink is called
// from the engine thread, except OnRejected (any thread; it only increments a
// counter).
#ifndef HC_WORKER_SERVICE_WORKER_METRICS_H_
#define HC_WORKER_SERVICE_WORKER_METRICS_H_

#include <memory>
#include <vector>

#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "worker/engine/turn.h"

namespace hc::worker {

class WorkerMetrics final : public engine::EngineMetricsSink {
 public:
  explicit WorkerMetrics(prometheus::Registry& registry);

  void OnRejected(std::string_view reason) override;
  void OnLookup(cache::LookupResult result) override;
  void OnPrefixQuery(int64_t prompt_tokens, int64_t cached_tokens) override;
  void OnFirstToken(double seconds) override;
  void OnInterToken(double seconds) override;
  void OnCommit(std::string_view outcome, double seconds) override;
  void OnStep(const cache::CacheCounters& counters, int num_running, int num_waiting) override;

  // hc_worker_intra_op_threads{rank}: the intra-op threads of each rank
  // (element r: rank r), set once at start-up. Empty (CUDA): no series.
  void SetIntraOpThreads(const std::vector<int>& rank_threads);

 private:
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Counter& queries_;
  prometheus::Counter& hits_;
  prometheus::Counter* lookups_[3];  // by cache::LookupResult
  prometheus::Histogram& commit_duration_;
  prometheus::Family<prometheus::Counter>& commits_;
  prometheus::Histogram& ttft_;
  prometheus::Histogram& itl_;
  prometheus::Gauge* kv_blocks_[3];     // free, committed, active
  prometheus::Gauge* mamba_slots_[4];   // free, committed, active, snapshot
  prometheus::Counter* cow_copies_[2];  // attention, mamba
  prometheus::Counter* evictions_[2];
  prometheus::Gauge& running_;
  prometheus::Gauge& waiting_;
  prometheus::Gauge& conversations_;
  prometheus::Family<prometheus::Gauge>& intra_op_threads_;
  prometheus::Counter* snapshot_lookups_[2];  // hit, miss
  prometheus::Counter* snapshots_[3];         // taken, skipped, evicted
  // Totals already added to the counters that mirror the cache's totals.
  int64_t seen_cow_[2] = {0, 0};
  int64_t seen_evictions_[2] = {0, 0};
  int64_t seen_snapshot_lookups_[2] = {0, 0};
  int64_t seen_snapshots_[3] = {0, 0, 0};
};

}  // namespace hc::worker

#endif  // HC_WORKER_SERVICE_WORKER_METRICS_H_
