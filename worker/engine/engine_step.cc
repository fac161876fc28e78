// One engine step, as named actions over a StepBatch: schedule running turns
// (decode first, then prefill chunks) and grow their caches, admit waiting
// turns, then forward, sample and emit (engine_forward.cc). Engine thread
// only.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "worker/engine/engine_impl.h"

namespace hc::engine::internal {

void EngineImpl::Step() {
  StepBatch batch{.budget = options_.max_batch_tokens};
  ScheduleRunning(batch);
  if (!batch.preempted) AdmitWaiting(batch);
  if (batch.turns.empty()) return;
  if (!ForwardBatch(batch)) return;
  SampleAndEmit(batch);
}

void EngineImpl::ScheduleRunning(StepBatch& batch) {
  for (const bool decoding : {true, false}) {
    // running_ is re-read each time: growing one turn may preempt (remove)
    // others, or the turn itself. Each round schedules or removes a turn, so
    // the loop ends.
    while (batch.budget > 0) {
      EngineTurn* t = NextToSchedule(decoding);
      if (t == nullptr) break;
      const int n = t->ChunkLen(batch.budget);
      // kPreempted / kFailed: t left running_ and is not forwarded this step.
      if (GrowRunning(t, n, batch) == GrowOutcome::kGrown) AddToBatch(t, n, batch);
    }
  }
}

EngineTurn* EngineImpl::NextToSchedule(bool decoding) const {
  for (const auto& t : running_) {
    if (t->scheduled == 0 && !t->generated.empty() == decoding) return t.get();
  }
  return nullptr;
}

GrowOutcome EngineImpl::GrowRunning(EngineTurn* t, int n, StepBatch& batch) {
  for (;;) {
    const absl::Status grown = options_.cache->Append(*t->cache_request, n);
    if (grown.ok()) return GrowOutcome::kGrown;
    // Preempt the newest running turn that is not scheduled yet (possibly t
    // itself), by recompute: it goes back to the queue and frees its memory.
    EngineTurn* victim = nullptr;
    for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
      if ((*it)->scheduled == 0) {
        victim = it->get();
        break;
      }
    }
    if (victim == t && running_.size() == 1) {
      // Alone and still too large: evicting every idle state was not enough.
      Fail(t, absl::ResourceExhaustedError(absl::StrCat("the KV cache cannot hold this turn's ",
                                                        t->ContextLen(), " tokens")));
      return GrowOutcome::kFailed;
    }
    HC_CHECK(victim != nullptr) << "t itself is unscheduled, so a victim exists";
    Preempt(victim);
    batch.preempted = true;
    if (victim == t) return GrowOutcome::kPreempted;
  }
}

void EngineImpl::AdmitWaiting(StepBatch& batch) {
  while (batch.budget > 0 && !waiting_.empty() &&
         static_cast<int>(running_.size()) < options_.max_running) {
    EngineTurn* t = waiting_.front().get();
    const AdmitOutcome outcome = Admit(t);
    if (outcome == AdmitOutcome::kEnded) continue;  // Admit removed it
    const int n = t->ChunkLen(batch.budget);
    absl::Status grown = outcome == AdmitOutcome::kAttached
                             ? options_.cache->Append(*t->cache_request, n)
                             : absl::ResourceExhaustedError("no room to attach");
    if (!grown.ok()) {
      if (t->cache_request.has_value()) {
        HC_CHECK_OK(options_.cache->Discard(*t->cache_request));
        t->cache_request.reset();
      }
      if (running_.empty() && batch.turns.empty()) {
        // Nothing will ever free memory for it: too large for this worker.
        Fail(t, absl::ResourceExhaustedError(
                    absl::StrCat("a context of ", t->ContextLen(),
                                 " tokens does not fit in this worker's KV cache / Mamba slots")));
        continue;
      }
      break;  // wait for running turns to free memory
    }
    StartRunning(t);
    EmitStarted(*t);
    AddToBatch(t, n, batch);
  }
}

void EngineImpl::AddToBatch(EngineTurn* t, int n, StepBatch& batch) {
  t->scheduled = n;
  batch.budget -= n;
  batch.turns.push_back(t);
}

AdmitOutcome EngineImpl::Admit(EngineTurn* t) {
  cache::ConversationCache& cache = *options_.cache;
  const TurnSpec& req = t->req;
  const bool first = !t->admitted_once;
  t->admitted_once = true;

  if (first) {
    // Step 3: the precise lookup. A mismatch is a miss, never a guess.
    std::optional<cache::LookupResult> lookup;
    if (req.expected.has_value()) {
      lookup = cache.Lookup(req.key, *req.expected);
      if (options_.metrics) options_.metrics->OnLookup(*lookup);
    }
    if (lookup == cache::LookupResult::kHit) {
      t->resume = Resume::kCommitted;
      t->base = *req.expected;
      t->tokens = req.suffix;
    } else if (!req.expected.has_value() || req.has_history) {
      // A recompute, unless the conversation's snapshot covers a prefix of
      // the history (a rewrite turn continuing the previous prompt).
      const std::optional<RoundStamp> snap =
          req.history.empty() ? std::nullopt : cache.LookupSnapshot(req.key, req.history);
      t->resume = snap.has_value() ? Resume::kSnapshot : Resume::kFresh;
      t->base = snap.value_or(RoundStamp{});
      t->tokens.assign(req.history.begin() + t->base.num_tokens, req.history.end());
      t->tokens.insert(t->tokens.end(), req.suffix.begin(), req.suffix.end());
    } else {
      const std::string reason = lookup == cache::LookupResult::kStale
                                     ? "the cached state is at another round"
                                     : "no cached state for this conversation";
      auto observer = t->observer;
      Retire(t);
      observer->OnStateMissing(reason);
      return AdmitOutcome::kEnded;
    }
  }

  // Step 4: attach. A preempted turn re-attaches the same way; if its
  // committed state went away meanwhile it recomputes from the history.
  absl::StatusOr<cache::AttachResult> attached =
      t->resume == Resume::kCommitted  ? cache.Attach(req.key, t->base)
      : t->resume == Resume::kSnapshot ? cache.AttachSnapshot(req.key, t->base)
                                       : cache.AttachFresh(req.key);
  if (!attached.ok() && t->resume != Resume::kFresh &&
      !absl::IsResourceExhausted(attached.status())) {
    if (!req.has_history && t->resume == Resume::kCommitted) {
      if (!t->started) {
        // Evicted while the turn waited: nothing was streamed, so the router
        // can resend it with the history.
        auto observer = t->observer;
        Retire(t);
        observer->OnStateMissing("the cached state was evicted before the turn started");
      } else {
        Fail(t,
             absl::UnavailableError("the cached state was evicted while the turn was preempted"));
      }
      return AdmitOutcome::kEnded;
    }
    // Recompute from the history: what came before the tokens the turn
    // holds (all of it after a hit, the prefix before the snapshot else).
    const size_t before = t->resume == Resume::kSnapshot ? t->base.num_tokens : req.history.size();
    std::vector<int32_t> tokens(req.history.begin(), req.history.begin() + before);
    tokens.insert(tokens.end(), t->tokens.begin(), t->tokens.end());
    t->tokens = std::move(tokens);
    t->resume = Resume::kFresh;
    t->base = RoundStamp{};
    attached = cache.AttachFresh(req.key);
  }
  if (!attached.ok()) {
    if (absl::IsResourceExhausted(attached.status())) return AdmitOutcome::kNoRoom;
    Fail(t, attached.status());
    return AdmitOutcome::kEnded;
  }
  HC_CHECK(attached->num_computed_tokens == t->base.num_tokens)
      << "cache attached at " << attached->num_computed_tokens << " tokens, expected "
      << t->base.num_tokens;
  t->cache_request = attached->request;
  t->next = 0;
  t->hash = t->base.token_hash;
  return AdmitOutcome::kAttached;
}

}  // namespace hc::engine::internal
