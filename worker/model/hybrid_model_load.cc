// HybridModel::CreateFromSource: weights through LoadF32 (any stored dtype).
// Kept apart from hybrid_model.cc so that code which builds its weights in
// memory does not depend on the checkpoint reader.
#include "worker/model/hybrid_model.h"
#include "worker/model/tensor_parallel_model.h"

namespace hc::model {

absl::StatusOr<std::unique_ptr<HybridModel>> HybridModel::CreateFromSource(
    const HybridModelOptions& options, const ModelConfig& config, const TensorSource& source) {
  return Create(options, config,
                [&source](std::string_view name, const std::vector<int64_t>& shape) {
                  return LoadF32(source, name, shape);
                });
}

absl::StatusOr<std::unique_ptr<TensorParallelModel>> TensorParallelModel::CreateFromSource(
    const TensorParallelModelOptions& options, const ModelConfig& config,
    const TensorSource& source) {
  return Create(options, config,
                [&source](std::string_view name, const std::vector<int64_t>& shape) {
                  return LoadF32(source, name, shape);
                });
}

}  // namespace hc::model
