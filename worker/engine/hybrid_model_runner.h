// The engine's ModelRunner over the hybrid model: every tensor-parallel rank
// runs the step, rank 0's logits go back to the engine.
#ifndef HC_WORKER_ENGINE_HYBRID_MODEL_RUNNER_H_
#define HC_WORKER_ENGINE_HYBRID_MODEL_RUNNER_H_

#include <vector>

#include "worker/engine/model_runner.h"
#include "worker/model/tensor_parallel_model.h"
#include "worker/runtime/cache_memory.h"

namespace hc::engine {

// Thread-safety: engine thread only (ModelRunner's contract).
class HybridModelRunner final : public ModelRunner {
 public:
  // Neither is owned; both outlive the runner. `cache` has model->tp_size() ranks.
  HybridModelRunner(model::TensorParallelModel* model, runtime::CacheMemory* cache)
      : model_(model), cache_(cache) {}

  int vocab_size() const override { return model_->config().vocab_size; }
  absl::Status Forward(std::span<const ForwardSeq> batch, std::span<float> logits) override;

 private:
  model::TensorParallelModel* model_;
  runtime::CacheMemory* cache_;
  model::ForwardBatch scratch_;
  std::vector<float> logits_;
};

}  // namespace hc::engine

#endif  // HC_WORKER_ENGINE_HYBRID_MODEL_RUNNER_H_
