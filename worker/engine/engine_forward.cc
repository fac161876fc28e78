// The engine step's last actions: forward the batch through the model, sample
// the turns whose chunk ended their context, emit tokens and finish the turns
// that stop. Engine thread only.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "worker/engine/engine_impl.h"

namespace hc::engine::internal {

bool EngineImpl::ForwardBatch(const StepBatch& batch) {
  seqs_.clear();
  int num_logits = 0;
  for (EngineTurn* t : batch.turns) {
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
  if (forward.ok()) return true;
  HC_LOG(ERROR) << "model forward failed: " << forward;
  const absl::Status failed =
      absl::InternalError(absl::StrCat("model forward failed: ", forward.message()));
  for (EngineTurn* t : batch.turns) Fail(t, failed);
  return false;
}

void EngineImpl::SampleAndEmit(const StepBatch& batch) {
  int row = 0;
  const absl::Time now = absl::Now();
  for (size_t i = 0; i < batch.turns.size(); ++i) {
    EngineTurn* t = batch.turns[i];
    const auto computed = std::span<const int32_t>(t->tokens).subspan(t->next, t->scheduled);
    t->hash = ExtendTokenHash(t->hash, computed);
    t->next += t->scheduled;
    t->scheduled = 0;
    if (t->req.snapshot_at.has_value() && !t->snapshot.has_value() &&
        t->NumComputed() == *t->req.snapshot_at) {
      // The chunk ended at the snapshot point (ChunkLen): copy the state now,
      // before the next step moves it on. Best effort: without a slot the
      // next rewrite turn recomputes.
      const RoundStamp at{
          .round = t->req.new_round, .num_tokens = t->NumComputed(), .token_hash = t->hash};
      if (options_.cache->TakeSnapshot(*t->cache_request, at).ok()) t->snapshot = at;
    }
    if (!seqs_[i].need_logits) continue;
    const std::span<const float> row_logits(logits_.data() + static_cast<size_t>(row++) * vocab_,
                                            vocab_);
    const SampledToken s = t->sampler.Sample(row_logits, t->req.sampling.sampler);
    t->tokens.push_back(s.token);
    t->generated.push_back(s.token);
    EmitToken(*t, s, row_logits, now);
    if (auto stop = CheckStop(*t)) Finish(t, *stop);  // t is gone after Finish
  }
}

void EngineImpl::EmitToken(EngineTurn& t, const SampledToken& s, std::span<const float> logits,
                           absl::Time now) {
  if (options_.metrics) {
    if (t.generated.size() == 1) {
      options_.metrics->OnFirstToken(absl::ToDoubleSeconds(now - t.submitted));
    } else {
      options_.metrics->OnInterToken(absl::ToDoubleSeconds(now - t.last_token));
    }
  }
  t.last_token = now;
  const float logprob = s.logprob;
  std::vector<TokenAlternative> top;
  if (t.req.sampling.logprobs) AppendTopLogprobs(logits, t.req.sampling.top_logprobs, &top);
  t.observer->OnTokens(
      std::span<const int32_t>(&s.token, 1),
      t.req.sampling.logprobs ? std::span<const float>(&logprob, 1) : std::span<const float>(),
      top);
}

void EngineImpl::EmitStarted(EngineTurn& t) {
  if (t.started) return;
  t.started = true;
  const TurnStart start{.prompt_tokens = t.ContextLen(), .cached_tokens = t.base.num_tokens};
  if (options_.metrics) options_.metrics->OnPrefixQuery(start.prompt_tokens, start.cached_tokens);
  t.observer->OnStarted(start);
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

}  // namespace hc::engine::internal
