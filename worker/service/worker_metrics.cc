#include "worker/service/worker_metrics.h"

#include <string>

#include "common/metrics.h"

namespace hc::worker {
namespace {

prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& r, const char* name,
                                                       const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}
prometheus::Family<prometheus::Gauge>& GaugeFamily(prometheus::Registry& r, const char* name,
                                                   const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}
prometheus::Family<prometheus::Histogram>& HistogramFamily(prometheus::Registry& r,
                                                           const char* name, const char* help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r);
}

}  // namespace

WorkerMetrics::WorkerMetrics(prometheus::Registry& r)
    : rejected_(CounterFamily(r, "hc_worker_rejected_requests_total",
                              "Turns refused at submission for load, by reason: queue_full "
                              "(--max_waiting turns already wait), draining")),
      queries_(CounterFamily(r, "hc_worker_prefix_cache_queries_total",
                             "Prompt tokens of admitted turns (history + suffix)")
                   .Add({})),
      hits_(CounterFamily(r, "hc_worker_prefix_cache_hits_total",
                          "Prompt tokens served from committed state instead of recomputed")
                .Add({})),
      commit_duration_(HistogramFamily(r, "hc_worker_commit_duration_seconds",
                                       "Time to publish a finished turn's state (pointer swap)")
                           .Add({}, FastOpBuckets())),
      commits_(CounterFamily(r, "hc_worker_commits_total",
                             "Turn endings by outcome: published, discarded, failed")),
      ttft_(HistogramFamily(r, "hc_worker_time_to_first_token_seconds",
                            "From a turn's arrival at the worker to its first sampled token")
                .Add({}, LatencyBuckets())),
      itl_(HistogramFamily(r, "hc_worker_inter_token_latency_seconds",
                           "Time between consecutive sampled tokens of a turn")
               .Add({}, LatencyBuckets())),
      running_(
          GaugeFamily(r, "hc_worker_num_requests_running", "Turns running in the engine").Add({})),
      waiting_(
          GaugeFamily(r, "hc_worker_num_requests_waiting", "Turns queued for admission").Add({})),
      conversations_(GaugeFamily(r, "hc_worker_conversations",
                                 "Committed conversation states held in the cache")
                         .Add({})),
      intra_op_threads_(GaugeFamily(r, "hc_worker_intra_op_threads",
                                    "CPU worker: intra-op threads of each tensor-parallel rank "
                                    "(--threads split over --tp); absent on CUDA")) {
  auto& lookups = CounterFamily(r, "hc_worker_conversation_lookups_total",
                                "Precise conversation lookups by result: hit, miss, stale");
  lookups_[static_cast<int>(cache::LookupResult::kHit)] = &lookups.Add({{"result", "hit"}});
  lookups_[static_cast<int>(cache::LookupResult::kMiss)] = &lookups.Add({{"result", "miss"}});
  lookups_[static_cast<int>(cache::LookupResult::kStale)] = &lookups.Add({{"result", "stale"}});
  auto& blocks =
      GaugeFamily(r, "hc_worker_kv_blocks", "KV blocks by state: free, committed, active");
  auto& slots = GaugeFamily(r, "hc_worker_mamba_slots",
                            "Mamba state slots by state: free, committed, active, snapshot");
  const char* states[4] = {"free", "committed", "active", "snapshot"};
  for (int i = 0; i < 4; ++i) {
    if (i < 3) kv_blocks_[i] = &blocks.Add({{"state", states[i]}});
    mamba_slots_[i] = &slots.Add({{"state", states[i]}});
  }
  auto& snapshot_lookups = CounterFamily(
      r, "hc_worker_snapshot_lookups_total",
      "Turns recomputing from history that looked for a Mamba snapshot at a prefix of it: "
      "hit (resumed there), miss (recomputed from token 0)");
  snapshot_lookups_[0] = &snapshot_lookups.Add({{"result", "hit"}});
  snapshot_lookups_[1] = &snapshot_lookups.Add({{"result", "miss"}});
  auto& snapshots = CounterFamily(r, "hc_worker_snapshots_total",
                                  "Mamba state snapshots at a prompt's last message boundary: "
                                  "taken, skipped (no slot), evicted (dropped for room)");
  const char* events[3] = {"taken", "skipped", "evicted"};
  for (int i = 0; i < 3; ++i) snapshots_[i] = &snapshots.Add({{"event", events[i]}});
  auto& cow = CounterFamily(r, "hc_worker_cow_copies_total",
                            "Copies made on attach: the attention tail block, the Mamba state");
  auto& evictions =
      CounterFamily(r, "hc_worker_evictions_total",
                    "Cache memory freed by evicting idle committed states: KV blocks, Mamba slots");
  const char* groups[2] = {"attention", "mamba"};
  for (int i = 0; i < 2; ++i) {
    cow_copies_[i] = &cow.Add({{"group", groups[i]}});
    evictions_[i] = &evictions.Add({{"group", groups[i]}});
  }
  for (const char* outcome : {"published", "discarded", "failed"})
    commits_.Add({{"outcome", outcome}});
  for (const char* reason : {"queue_full", "draining"}) rejected_.Add({{"reason", reason}});
}

void WorkerMetrics::SetIntraOpThreads(const std::vector<int>& rank_threads) {
  for (size_t r = 0; r < rank_threads.size(); ++r) {
    intra_op_threads_.Add({{"rank", std::to_string(r)}}).Set(rank_threads[r]);
  }
}

void WorkerMetrics::OnRejected(std::string_view reason) {
  rejected_.Add({{"reason", std::string(reason)}}).Increment();
}

void WorkerMetrics::OnLookup(cache::LookupResult result) {
  lookups_[static_cast<int>(result)]->Increment();
}

void WorkerMetrics::OnPrefixQuery(int64_t prompt_tokens, int64_t cached_tokens) {
  queries_.Increment(static_cast<double>(prompt_tokens));
  hits_.Increment(static_cast<double>(cached_tokens));
}

void WorkerMetrics::OnFirstToken(double seconds) { ttft_.Observe(seconds); }
void WorkerMetrics::OnInterToken(double seconds) { itl_.Observe(seconds); }

void WorkerMetrics::OnCommit(std::string_view outcome, double seconds) {
  commits_.Add({{"outcome", std::string(outcome)}}).Increment();
  if (outcome == "published") commit_duration_.Observe(seconds);
}

void WorkerMetrics::OnStep(const cache::CacheCounters& c, int num_running, int num_waiting) {
  kv_blocks_[0]->Set(static_cast<double>(c.kv_blocks_free));
  kv_blocks_[1]->Set(static_cast<double>(c.kv_blocks_committed));
  kv_blocks_[2]->Set(static_cast<double>(c.kv_blocks_active));
  mamba_slots_[0]->Set(static_cast<double>(c.mamba_slots_free));
  mamba_slots_[1]->Set(static_cast<double>(c.mamba_slots_committed));
  mamba_slots_[2]->Set(static_cast<double>(c.mamba_slots_active));
  mamba_slots_[3]->Set(static_cast<double>(c.mamba_slots_snapshot));
  const int64_t lookups[2] = {c.snapshot_hits, c.snapshot_misses};
  for (int i = 0; i < 2; ++i) {
    snapshot_lookups_[i]->Increment(static_cast<double>(lookups[i] - seen_snapshot_lookups_[i]));
    seen_snapshot_lookups_[i] = lookups[i];
  }
  const int64_t snaps[3] = {c.snapshots_taken, c.snapshots_skipped, c.snapshots_evicted};
  for (int i = 0; i < 3; ++i) {
    snapshots_[i]->Increment(static_cast<double>(snaps[i] - seen_snapshots_[i]));
    seen_snapshots_[i] = snaps[i];
  }
  const int64_t cow[2] = {c.kv_cow_copies, c.mamba_cow_copies};
  const int64_t evicted[2] = {c.kv_evicted_blocks, c.mamba_evicted_slots};
  for (int i = 0; i < 2; ++i) {
    cow_copies_[i]->Increment(static_cast<double>(cow[i] - seen_cow_[i]));
    evictions_[i]->Increment(static_cast<double>(evicted[i] - seen_evictions_[i]));
    seen_cow_[i] = cow[i];
    seen_evictions_[i] = evicted[i];
  }
  running_.Set(num_running);
  waiting_.Set(num_waiting);
  conversations_.Set(static_cast<double>(c.conversations));
}

}  // namespace hc::worker
