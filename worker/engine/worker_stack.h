// Everything one worker runs, assembled from a model spec and sizes: backend,
// tensor-parallel model, cache memory, conversation cache, tokenizer (for stop
// strings) and the engine. Used by hc-worker and by the engine benchmarks, so
// both run exactly the same stack.
#ifndef HC_WORKER_ENGINE_WORKER_STACK_H_
#define HC_WORKER_ENGINE_WORKER_STACK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/text/tokenizer.h"
#include "worker/cache/conversation_cache.h"
#include "worker/engine/engine.h"
#include "worker/engine/hybrid_model_runner.h"
#include "worker/model/model_config.h"
#include "worker/model/tensor_parallel_model.h"
#include "worker/runtime/cache_memory.h"
#include "worker/runtime/device_group.h"

namespace hc::engine {

struct WorkerStackOptions {
  std::string model = "synthetic:tiny";  // checkpoint dir or synthetic:<preset>
  // Weight and KV cache storage: auto | float32 | bfloat16 (model/weight_dtype.h).
  std::string dtype = "auto";
  std::string kv_dtype = "auto";
  std::string device = "cpu";  // cpu | cuda | auto (cuda when this build and machine have one)
  int tp = 1;
  // Intra-op threads of a CPU worker, all ranks together (split over the
  // ranks by model::SplitThreads; each rank gets at least 1). 0: AvailableCpus()
  // (the affinity mask, capped by the cgroup CPU quota). Negative:
  // INVALID_ARGUMENT. Ignored on CUDA.
  int threads = 0;
  int kv_blocks = 0;                     // 0: derive from kv_cache_bytes
  int64_t kv_cache_bytes = 256ll << 20;  // used when kv_blocks == 0
  int mamba_slots = 64;
  int block_size = 16;
  int max_batch_tokens = 512;
  int max_running = 64;
  int max_waiting = 256;                 // EngineOptions::max_waiting (0: unbounded)
  int max_model_len = 0;                 // 0: the model's max_position_embeddings
  EngineMetricsSink* metrics = nullptr;  // not owned
};

class WorkerStack {
 public:
  // Loads the model and sizes the caches. Errors name what is wrong (model
  // path, config, tensor, sizes); INVALID_ARGUMENT for an unknown device.
  static absl::StatusOr<std::unique_ptr<WorkerStack>> Create(const WorkerStackOptions& options);
  ~WorkerStack();  // stops the engine first

  Engine& engine() { return *engine_; }
  const model::ModelConfig& config() const { return model_->config(); }
  const std::string& model_dir() const { return model_dir_; }
  int max_model_len() const { return max_model_len_; }
  int kv_blocks() const { return memory_->kv_layout().num_blocks; }
  int mamba_slots() const { return memory_->mamba_layout().num_slots; }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  // Intra-op threads of each rank (element r: rank r); empty on CUDA, where
  // --threads does not apply.
  const std::vector<int>& rank_threads() const { return model_->rank_threads(); }

 private:
  WorkerStack() = default;

  std::string model_dir_;
  int max_model_len_ = 0;
  std::unique_ptr<runtime::DeviceGroup> devices_;
  std::unique_ptr<model::TensorParallelModel> model_;
  std::unique_ptr<runtime::CacheMemory> memory_;
  std::unique_ptr<cache::ConversationCache> cache_;
  std::unique_ptr<HybridModelRunner> runner_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Engine> engine_;  // last: stopped before the rest goes
};

}  // namespace hc::engine

#endif  // HC_WORKER_ENGINE_WORKER_STACK_H_
