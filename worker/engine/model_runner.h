// What the engine needs from a model: one varlen forward step over a batch
// that mixes prefill chunks and decode tokens, reading and writing the cache
// groups' memory through block tables and Mamba slots.
#ifndef HC_WORKER_ENGINE_MODEL_RUNNER_H_
#define HC_WORKER_ENGINE_MODEL_RUNNER_H_

#include <cstdint>
#include <span>

#include "absl/status/status.h"

namespace hc::engine {

// One sequence of a step.
struct ForwardSeq {
  // New tokens, at positions [num_computed_tokens, num_computed_tokens + n).
  std::span<const int32_t> tokens;
  // Tokens whose KV and Mamba state are already in the cache.
  int64_t num_computed_tokens = 0;
  // Block ids covering positions [0, num_computed_tokens + n); the model writes
  // the new tokens' K/V there.
  std::span<const int32_t> block_table;
  // Mamba slot holding the state after num_computed_tokens tokens; the model
  // leaves the state after the new tokens there. Owned by the request.
  int32_t mamba_slot = -1;
  // Whether the logits of the last new token are wanted.
  bool need_logits = false;
};

// Thread-safety: not thread-safe; called by the engine thread only.
class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  virtual int vocab_size() const = 0;

  // Runs the batch. `logits` is [number of seqs with need_logits, vocab_size],
  // rows in batch order. REQUIRES: token ids < vocab_size; distinct slots.
  // On error the caller discards every request of the batch (their owned
  // blocks and slots may hold partial writes; committed state is untouched).
  virtual absl::Status Forward(std::span<const ForwardSeq> batch, std::span<float> logits) = 0;
};

}  // namespace hc::engine

#endif  // HC_WORKER_ENGINE_MODEL_RUNNER_H_
