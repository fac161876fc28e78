// Test support for worker/model: a tiny Bamba config, an in-memory
// TensorSource with seeded random weights under the Hugging Face names, and a
// runner that drives tp ranks of HybridModel on threads over one
// BackendCacheMemory on a CPU backend.
#ifndef HC_TESTS_UNIT_WORKER_MODEL_TEST_MODEL_H_
#define HC_TESTS_UNIT_WORKER_MODEL_TEST_MODEL_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/intra_op.h"
#include "kernels/cpu/cpu_kernels.h"
#include "worker/model/hybrid_model.h"
#include "worker/model/tensor_parallel_model.h"
#include "worker/model/tensor_source.h"
#include "worker/runtime/backend.h"
#include "worker/runtime/backend_cache_memory.h"
#include "worker/runtime/communicator.h"

namespace hc::model::testing {

// The architectures of the tiny test configs.
enum class TinyArch {
  kBamba,       // 3 layers (Mamba, attention, Mamba) + SwiGLU MLP each
  kGranite,     // granitemoehybrid: same layout, µP multipliers, NoPE, dense shared MLP
  kGraniteMoe,  // granitemoehybrid with RoPE and 4 experts (top 2) + the shared MLP
  kNemotron,    // nemotron_h "M-*EM": relu² MLP, NoPE, MoE with 4 experts in 2 groups
};
const char* TinyArchName(TinyArch arch);

// D = 32, GQA 4/2 heads (head_dim 8; Bamba: partial RoPE), Mamba H = 4 x P = 16,
// N = 8, W = 4, chunk 8, vocab 64.
ModelConfig TinyConfig(int mamba_groups = 1, TinyArch arch = TinyArch::kBamba);

// fp32 tensors by name (every tensor of ModelTensorSpecs), filled with seeded
// random values scaled like a trained model's (so activations stay O(1)).
class RandomTensorSource final : public TensorSource {
 public:
  // bf16_representable: every value rounded to bf16 (kept as fp32), so fp32
  // and bf16 weight storage hold the same weights.
  RandomTensorSource(const ModelConfig& config, uint32_t seed, bool bf16_representable = false);
  absl::StatusOr<TensorView> Get(std::string_view name) const override;
  bool Has(std::string_view name) const override;
  std::vector<std::string> Names() const override;

 private:
  struct Tensor {
    std::vector<int64_t> shape;
    std::vector<float> data;
  };
  void Add(const std::string& name, std::vector<int64_t> shape, float lo, float hi);
  void AddBamba(const ModelConfig& config);
  std::map<std::string, Tensor, std::less<>> tensors_;
  uint32_t seed_;
  bool bf16_representable_;
};

// F32-only stand-in for LoadF32 over any TensorSource (shape checked).
absl::StatusOr<std::vector<float>> LoadF32ForTest(const TensorSource& source, std::string_view name,
                                                  const std::vector<int64_t>& shape);

struct TpRunnerOptions {
  int tp = 1;
  int num_blocks = 64;
  int block_size = 4;
  int num_slots = 4;
  size_t max_bytes = 0;
  runtime::DType weight_dtype = runtime::DType::kF32;
  runtime::DType kv_dtype = runtime::DType::kF32;
  // Intra-op threads per rank (TensorParallelModelOptions::rank_threads):
  // rank 0's pool belongs to the runner and is bound around Forward, as the
  // engine thread binds its own.
  std::vector<int> rank_threads;
  kernels::CpuKernelOptions kernels;
};

// A TensorParallelModel of tp ranks over its own CPU backend (optionally
// limited to max_bytes) and cache memory on that backend (so the backend's
// allocated_bytes() and max_bytes include the cache); Forward returns rank 0's
// logits. Create and Forward on one thread (the owner of rank 0's pool).
class TpRunner {
 public:
  static absl::StatusOr<std::unique_ptr<TpRunner>> Create(const ModelConfig& config,
                                                          const TensorSource& source,
                                                          const TpRunnerOptions& options);
  static absl::StatusOr<std::unique_ptr<TpRunner>> Create(
      const ModelConfig& config, const TensorSource& source, int tp, int num_blocks, int block_size,
      int num_slots, size_t max_bytes = 0, runtime::DType weight_dtype = runtime::DType::kF32,
      runtime::DType kv_dtype = runtime::DType::kF32);
  absl::StatusOr<std::vector<float>> Forward(const ForwardBatch& batch);
  runtime::BackendCacheMemory& cache() { return *cache_; }
  runtime::Backend& backend() { return *backend_; }

 private:
  std::unique_ptr<runtime::Backend> backend_;
  std::unique_ptr<TensorParallelModel> model_;
  std::unique_ptr<runtime::BackendCacheMemory> cache_;
  std::optional<IntraOpPool> rank0_pool_;
};

double MaxRelError(const std::vector<float>& got, const std::vector<float>& want);

}  // namespace hc::model::testing

#endif  // HC_TESTS_UNIT_WORKER_MODEL_TEST_MODEL_H_
