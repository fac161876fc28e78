// A turn as the engine sees it (steps 3-7 of docs/architecture.md), and the
// callbacks through which it reports progress.
#ifndef HC_WORKER_ENGINE_TURN_H_
#define HC_WORKER_ENGINE_TURN_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "worker/cache/conversation_cache.h"
#include "worker/engine/sampler.h"

namespace hc::engine {

struct TurnSampling {
  SamplingOptions sampler;
  int max_tokens = 256;                 // >= 1
  std::optional<uint64_t> seed;         // unset: drawn from the engine's RNG
  std::vector<int32_t> stop_token_ids;  // at most kMaxStopTokenIds
  // At most kMaxStopStrings non-empty strings of at most kMaxStopStringBytes
  // (common/text/stop_limits.h); matched on the generated tokens' bytes (see
  // EngineOptions::token_bytes, which they need).
  std::vector<std::string> stop_strings;
  bool ignore_eos = false;
  bool logprobs = false;
  // The most likely tokens at each position, reported with each sampled
  // token (hc::kMaxTopLogprobs at most, checked by the service); only with
  // logprobs.
  int top_logprobs = 0;
};

struct TurnSpec {
  cache::ConversationKey key;
  std::string request_id;  // unique among running turns; used by Cancel
  // The committed state the router expects this worker to hold. Unset: none
  // is expected and the turn computes history + suffix from scratch.
  std::optional<cache::RoundStamp> expected;
  uint64_t new_round = 1;       // > expected->round
  std::vector<int32_t> suffix;  // non-empty
  // With has_history, a miss or stale lookup recomputes from history + suffix
  // instead of reporting the state missing.
  bool has_history = false;
  std::vector<int32_t> history;
  TurnSampling sampling;
  // Keep a snapshot of the Mamba state after this many context tokens
  // (history + suffix positions, in [1, context]): the prefill is split there
  // and the state copied, to be published with the turn's commit (see
  // ConversationCache::TakeSnapshot). The router sends the end of the
  // prompt's last message. Ignored when the turn's computation starts at or
  // past it; skipped when no Mamba slot can be had.
  std::optional<int64_t> snapshot_at;
};

struct TurnStart {
  int64_t prompt_tokens = 0;  // context of the turn: history + suffix
  int64_t cached_tokens = 0;  // served from the committed state or a snapshot
};

// Where a stop string began, when one ended the turn. The reply is the
// generated text before it: the first `tokens_before` generated tokens in
// full, then the leading bytes of generated token `tokens_before` (the one the
// stop string begins in) up to `reply_bytes` bytes in all.
struct StopStringCut {
  int64_t reply_bytes = 0;
  int64_t tokens_before = 0;
};

struct TurnResult {
  // The new committed state: normally every token of the turn but the last
  // sampled one. With a stop string that begins before the last sampled token
  // it is the state the turn started from, re-stamped at the new round (0
  // tokens if it started from nothing), since the Mamba state cannot be
  // rolled back; either way a prefix of context + reply tokens.
  cache::RoundStamp committed;
  std::string finish_reason;      // "stop" or "length"
  int64_t completion_tokens = 0;  // tokens sampled (the stop string's included)
  double commit_seconds = 0.0;
  std::optional<StopStringCut> stop_string;
  // The snapshot published with the state (TurnSpec::snapshot_at), if one was
  // taken: its position and the TokenHash of the tokens before it.
  std::optional<cache::RoundStamp> snapshot;
};

// Receives a turn's events on the engine thread, in order: OnStarted once (not
// for a turn that ends in OnStateMissing or fails before admission), then
// OnTokens any number of times, then exactly one of OnCommitted,
// OnStateMissing, OnFailed. Implementations must not block (queue and return).
class TurnObserver {
 public:
  virtual ~TurnObserver() = default;
  virtual void OnStarted(const TurnStart& start) = 0;
  // `logprobs`: one per token when sampling.logprobs, else empty. `top`: the
  // sampling.top_logprobs alternatives of each token in turn (token i's are
  // top[i*k, (i+1)*k) with k = top.size() / token_ids.size()), else empty.
  virtual void OnTokens(std::span<const int32_t> token_ids, std::span<const float> logprobs,
                        std::span<const TokenAlternative> top) = 0;
  virtual void OnCommitted(const TurnResult& result) = 0;
  virtual void OnStateMissing(std::string_view reason) = 0;
  // The turn was discarded; the previous committed state is untouched.
  virtual void OnFailed(const absl::Status& status) = 0;
};

// Observations for metrics, called on the engine thread (except OnRejected).
// Never blocks.
class EngineMetricsSink {
 public:
  virtual ~EngineMetricsSink() = default;
  // Submit refused a turn for load: "queue_full" (max_waiting turns wait) or
  // "draining". Called on the submitting thread, concurrently with the rest.
  virtual void OnRejected(std::string_view reason) = 0;
  virtual void OnLookup(cache::LookupResult result) = 0;
  // Per admitted turn: prompt tokens queried and those served from cache.
  virtual void OnPrefixQuery(int64_t prompt_tokens, int64_t cached_tokens) = 0;
  virtual void OnFirstToken(double seconds_since_submit) = 0;
  virtual void OnInterToken(double seconds) = 0;
  // outcome: "published", "discarded", "failed".
  virtual void OnCommit(std::string_view outcome, double seconds) = 0;
  // After each step (and when going idle).
  virtual void OnStep(const cache::CacheCounters& counters, int num_running, int num_waiting) = 0;
};

}  // namespace hc::engine

#endif  // HC_WORKER_ENGINE_TURN_H_
