// Token sampling from one row of logits: greedy, temperature, top-k, top-p,
// with a per-request seeded RNG so a seeded turn is reproducible.
//
// Order of operations (as in vLLM / transformers): temperature scaling, top-k,
// then top-p over the renormalised top-k distribution, then a draw. The
// returned log-probability is that of the sampled token under the model's
// unmodified distribution (log-softmax of the raw logits).
#ifndef HC_WORKER_ENGINE_SAMPLER_H_
#define HC_WORKER_ENGINE_SAMPLER_H_

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace hc::engine {

struct SamplingOptions {
  float temperature = 1.0f;  // 0 = greedy
  float top_p = 1.0f;        // (0, 1]; 1 disables
  int top_k = 0;             // 0 disables
};

struct SampledToken {
  int32_t token = 0;
  float logprob = 0.0f;
};

// One of the most likely tokens at a position (OpenAI's top_logprobs).
struct TokenAlternative {
  int32_t token = 0;
  float logprob = 0.0f;  // under the unmodified distribution, like SampledToken
  bool operator==(const TokenAlternative&) const = default;
};

// Thread-safety: not thread-safe; one per request, used by the engine thread.
class Sampler {
 public:
  explicit Sampler(uint64_t seed) : rng_(seed) {}

  // REQUIRES: logits non-empty and finite; options validated by the caller
  // (temperature >= 0, top_p in (0, 1], top_k >= 0).
  SampledToken Sample(std::span<const float> logits, const SamplingOptions& options);

 private:
  std::mt19937_64 rng_;
  std::vector<int32_t> order_;  // scratch, reused across calls
  std::vector<float> probs_;
};

// log-softmax(logits)[token], computed stably in double.
float TokenLogprob(std::span<const float> logits, int32_t token);

// Appends the min(k, vocab) most likely tokens of log-softmax(logits) to
// `out`, most likely first (ties: the lower id first, as greedy picks).
// REQUIRES: logits non-empty and finite, k >= 0.
void AppendTopLogprobs(std::span<const float> logits, int k, std::vector<TokenAlternative>* out);

}  // namespace hc::engine

#endif  // HC_WORKER_ENGINE_SAMPLER_H_
