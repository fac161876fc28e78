// One engine step: schedule (decode first, then prefill chunks, then admit
// waiting turns) within the token budget, run the model once, sample, stream,
// and commit the turns that finished. Engine thread only.
#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "worker/engine/engine_impl.h"

namespace hc::engine::internal {

void EngineImpl::Step() {
  int budget = options_.max_batch_tokens;
  std::vector<EngineTurn*> batch;

  // Decode tokens first (latency), then prefill chunks of running turns.
  for (const bool decode_pass : {true, false}) {
    std::vector<EngineTurn*> order;
    for (auto& t : running_) order.push_back(t.get());
    for (EngineTurn* t : order) {
      if (budget == 0) break;
      const bool decoding = !t->generated.empty();
      if (decoding != decode_pass || t->scheduled > 0) continue;
      // A preemption may have moved it out of running_.
      if (!t->cache_request.has_value()) continue;
      ScheduleRunning(t, &budget, batch);
    }
  }

  // Admit waiting turns in arrival order while budget and capacity last.
  while (budget > 0 && !waiting_.empty() &&
         static_cast<int>(running_.size()) < options_.max_running) {
    EngineTurn* t = waiting_.front().get();
    const AdmitOutcome outcome = Admit(t);
    if (outcome == AdmitOutcome::kEnded) continue;  // Admit removed it
    const int n = static_cast<int>(std::min<size_t>(t->Remaining(), budget));
    absl::Status grown = outcome == AdmitOutcome::kAttached
                             ? options_.cache->Append(*t->cache_request, n)
                             : absl::ResourceExhaustedError("no room to attach");
    if (!grown.ok()) {
      if (t->cache_request.has_value()) {
        HC_CHECK_OK(options_.cache->Discard(*t->cache_request));
        t->cache_request.reset();
      }
      if (running_.empty() && batch.empty()) {
        // Nothing will ever free memory for it: too large for this worker.
        Fail(t, absl::ResourceExhaustedError(
                    absl::StrCat("a context of ", t->ContextLen(),
                                 " tokens does not fit in this worker's KV cache / Mamba slots")));
        continue;
      }
      break;  // wait for running turns to free memory
    }
    StartRunning(t);
    if (!t->started) {
      t->started = true;
      const TurnStart start{.prompt_tokens = t->ContextLen(),
                            .cached_tokens = t->hit ? t->base.num_tokens : 0};
      if (options_.metrics)
        options_.metrics->OnPrefixQuery(start.prompt_tokens, start.cached_tokens);
      t->observer->OnStarted(start);
    }
    t->scheduled = n;
    budget -= n;
    batch.push_back(t);
  }
  if (batch.empty()) return;

  // Forward.
  seqs_.clear();
  int num_logits = 0;
  for (EngineTurn* t : batch) {
    ForwardSeq s;
    s.tokens = std::span<const int32_t>(t->tokens).subspan(t->next, t->scheduled);
    s.num_computed_tokens = t->NumComputed();
    s.block_table = options_.cache->BlockTable(*t->cache_request);
    s.mamba_slot = options_.cache->MambaSlot(*t->cache_request);
    s.need_logits = t->next + t->scheduled == t->tokens.size();
    num_logits += s.need_logits;
    seqs_.push_back(s);
  }
  logits_.resize(static_cast<size_t>(num_logits) * vocab_);
  const absl::Status forward = options_.model->Forward(seqs_, std::span<float>(logits_));
  if (!forward.ok()) {
    HC_LOG(ERROR) << "model forward failed: " << forward;
    const absl::Status failed =
        absl::InternalError(absl::StrCat("model forward failed: ", forward.message()));
    for (EngineTurn* t : batch) Fail(t, failed);
    return;
  }

  // Sample, stream, finish.
  int row = 0;
  const absl::Time now = absl::Now();
  for (size_t i = 0; i < batch.size(); ++i) {
    EngineTurn* t = batch[i];
    const auto computed = std::span<const int32_t>(t->tokens).subspan(t->next, t->scheduled);
    t->hash = ExtendTokenHash(t->hash, computed);
    t->next += t->scheduled;
    t->scheduled = 0;
    if (!seqs_[i].need_logits) continue;
    const std::span<const float> row_logits(logits_.data() + static_cast<size_t>(row++) * vocab_,
                                            vocab_);
    const SampledToken s = t->sampler.Sample(row_logits, t->req.sampling.sampler);
    t->tokens.push_back(s.token);
    t->generated.push_back(s.token);
    if (options_.metrics) {
      if (t->generated.size() == 1) {
        options_.metrics->OnFirstToken(absl::ToDoubleSeconds(now - t->submitted));
      } else {
        options_.metrics->OnInterToken(absl::ToDoubleSeconds(now - t->last_token));
      }
    }
    t->last_token = now;
    const float logprob = s.logprob;
    t->observer->OnTokens(
        std::span<const int32_t>(&s.token, 1),
        t->req.sampling.logprobs ? std::span<const float>(&logprob, 1) : std::span<const float>());
    if (auto stop = CheckStop(*t)) Finish(t, *stop);
  }
}

bool EngineImpl::ScheduleRunning(EngineTurn* t, int* budget, std::vector<EngineTurn*>& batch) {
  const int n = static_cast<int>(std::min<size_t>(t->Remaining(), *budget));
  for (;;) {
    const absl::Status grown = options_.cache->Append(*t->cache_request, n);
    if (grown.ok()) break;
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
      return false;
    }
    HC_CHECK(victim != nullptr) << "t itself is unscheduled, so a victim exists";
    Preempt(victim);
    if (victim == t) return false;
  }
  t->scheduled = n;
  *budget -= n;
  batch.push_back(t);
  return true;
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
      t->hit = true;
      t->base = *req.expected;
      t->tokens = req.suffix;
    } else if (!req.expected.has_value() || req.has_history) {
      t->base = RoundStamp{};
      t->tokens = req.history;
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
      t->hit ? cache.Attach(req.key, t->base) : cache.AttachFresh(req.key);
  if (!attached.ok() && t->hit && !absl::IsResourceExhausted(attached.status())) {
    if (!req.has_history) {
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
    std::vector<int32_t> tokens = req.history;
    tokens.insert(tokens.end(), t->tokens.begin(), t->tokens.end());
    t->tokens = std::move(tokens);
    t->hit = false;
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

std::optional<StopDecision> EngineImpl::CheckStop(EngineTurn& t) const {
  const TurnSampling& s = t.req.sampling;
  const int32_t last = t.generated.back();
  if (!s.ignore_eos && last == options_.eos_token_id) return StopDecision{"stop"};
  if (std::find(s.stop_token_ids.begin(), s.stop_token_ids.end(), last) != s.stop_token_ids.end()) {
    return StopDecision{"stop"};
  }
  if (!t.stop.empty()) {
    // Only the new token's bytes: the automaton carries every partial match.
    const std::optional<StopMatcher::Match> match = t.stop.Feed(options_.token_bytes(last));
    t.token_ends.push_back(t.stop.offset());
    if (match.has_value()) {
      // The token the stop string begins in: the first that ends after its
      // first byte.
      const auto in = std::upper_bound(t.token_ends.begin(), t.token_ends.end(), match->begin);
      return StopDecision{"stop", StopStringCut{.reply_bytes = match->begin,
                                                .tokens_before = in - t.token_ends.begin()}};
    }
  }
  if (static_cast<int>(t.generated.size()) >= s.max_tokens) return StopDecision{"length"};
  if (t.ContextLen() >= options_.max_model_len) return StopDecision{"length"};
  return std::nullopt;
}

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
                           .stop_string = stop.cut});
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
