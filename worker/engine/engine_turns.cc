// A turn's lifecycle in the engine: start running, preempt, finish (commit),
// fail, forget; and the load snapshot. Engine thread only.
#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "worker/engine/engine_impl.h"

namespace hc::engine::internal {

void EngineImpl::Finish(EngineTurn* t, const StopDecision& stop) {
  // Step 7: publish. The last sampled token has no KV yet, so the committed
  // state covers every token before it: a prefix of what the router commits
  // (context + reply) unless a stop string began before the last token. Then
  // the reply ends before tokens the state has consumed, and the Mamba state
  // cannot be rolled back: the turn keeps the state it started from.
  const int64_t last = static_cast<int64_t>(t->generated.size()) - 1;
  const bool keep_base = stop.cut.has_value() && stop.cut->tokens_before < last;
  RoundStamp stamp{
      .round = t->req.new_round, .num_tokens = t->NumComputed(), .token_hash = t->hash};
  const auto start = std::chrono::steady_clock::now();
  absl::Status committed;
  if (keep_base) {
    absl::StatusOr<RoundStamp> base =
        options_.cache->CommitBase(*t->cache_request, t->req.new_round);
    committed = base.status();
    if (base.ok()) stamp = *base;
  } else {
    committed = options_.cache->Commit(*t->cache_request, stamp);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  t->cache_request.reset();  // Commit ends the request either way
  if (options_.metrics)
    options_.metrics->OnCommit(committed.ok() ? "published" : "failed", seconds);
  auto observer = t->observer;
  const int64_t completion = static_cast<int64_t>(t->generated.size());
  Retire(t);
  if (committed.ok()) {
    observer->OnCommitted({.committed = stamp,
                           .finish_reason = stop.reason,
                           .completion_tokens = completion,
                           .commit_seconds = seconds,
                           .stop_string = stop.cut,
                           .snapshot = keep_base ? std::nullopt : t->snapshot});
  } else {
    observer->OnFailed(committed);
  }
}

void EngineImpl::Fail(EngineTurn* t, const absl::Status& status) {
  if (t->cache_request.has_value()) {
    const auto start = std::chrono::steady_clock::now();
    HC_CHECK_OK(options_.cache->Discard(*t->cache_request));
    t->cache_request.reset();
    if (options_.metrics) {
      options_.metrics->OnCommit(
          "discarded",
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  }
  auto observer = t->observer;
  Retire(t);
  observer->OnFailed(status);
}

void EngineImpl::Preempt(EngineTurn* t) {
  HC_LOG(INFO) << "preempting " << t->req.request_id << " (recompute) under memory pressure";
  HC_CHECK_OK(options_.cache->Discard(*t->cache_request));
  t->cache_request.reset();
  t->next = 0;
  t->hash = t->base.token_hash;
  t->snapshot.reset();  // discarded with the request; taken again on recompute
  auto it = std::find_if(running_.begin(), running_.end(),
                         [t](const std::unique_ptr<EngineTurn>& p) { return p.get() == t; });
  HC_CHECK(it != running_.end()) << "preempted turn is not running";
  waiting_.push_front(std::move(*it));
  running_.erase(it);
  // Back in the queue, it counts against max_waiting again (the queue may
  // exceed the bound this way; the bound only stops new turns).
  absl::MutexLock lock(&mu_);
  ++num_waiting_;
}

void EngineImpl::StartRunning(EngineTurn* t) {
  HC_CHECK(!waiting_.empty() && waiting_.front().get() == t) << "only the queue's head is admitted";
  running_.push_back(std::move(waiting_.front()));
  waiting_.pop_front();
  absl::MutexLock lock(&mu_);
  --num_waiting_;
}

void EngineImpl::Retire(EngineTurn* t) {
  const auto is_t = [t](const std::unique_ptr<EngineTurn>& p) { return p.get() == t; };
  std::unique_ptr<EngineTurn> owned;
  bool was_waiting = false;
  if (auto it = std::find_if(running_.begin(), running_.end(), is_t); it != running_.end()) {
    owned = std::move(*it);
    running_.erase(it);
  } else if (auto w = std::find_if(waiting_.begin(), waiting_.end(), is_t); w != waiting_.end()) {
    owned = std::move(*w);
    waiting_.erase(w);
    was_waiting = true;
  }
  // The load snapshot changes together with the active sets, so a caller that
  // saw the turn end (AwaitIdle) also sees its effect on the cache.
  const cache::CacheCounters counters = options_.cache->Counters();
  absl::MutexLock lock(&mu_);
  active_keys_.erase(t->req.key);
  active_ids_.erase(t->req.request_id);
  if (was_waiting) --num_waiting_;
  load_.num_running = static_cast<int>(running_.size());
  load_.cache = counters;
}

void EngineImpl::PublishLoad() {
  const cache::CacheCounters counters = options_.cache->Counters();
  const int running = static_cast<int>(running_.size());
  int waiting;
  {
    absl::MutexLock lock(&mu_);
    load_.num_running = running;
    load_.cache = counters;
    waiting = num_waiting_;  // includes turns still in the inbox
  }
  if (options_.metrics) options_.metrics->OnStep(counters, running, waiting);
}

}  // namespace hc::engine::internal
