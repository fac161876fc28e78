// Where model weights come from: a checkpoint on disk (safetensors) or, in
// tests, tensors built in memory. The model asks for tensors by their Hugging
// Face names and converts them to its compute dtype.
#ifndef HC_WORKER_MODEL_TENSOR_SOURCE_H_
#define HC_WORKER_MODEL_TENSOR_SOURCE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/runtime/cache_memory.h"

namespace hc::model {

// A read-only view of one stored tensor. `data` stays valid as long as the
// TensorSource that returned it is alive (e.g. an mmap of the checkpoint).
struct TensorView {
  runtime::DType dtype = runtime::DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t num_bytes = 0;
};

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // NOT_FOUND naming the tensor when absent.
  virtual absl::StatusOr<TensorView> Get(std::string_view name) const = 0;
  virtual bool Has(std::string_view name) const = 0;
  virtual std::vector<std::string> Names() const = 0;
};

// Returns tensor `name` converted to fp32, after checking that its shape is
// exactly `expected_shape`. Errors name the tensor and both shapes
// (INVALID_ARGUMENT for a wrong shape, NOT_FOUND when absent).
absl::StatusOr<std::vector<float>> LoadF32(const TensorSource& source, std::string_view name,
                                           const std::vector<int64_t>& expected_shape);

}  // namespace hc::model

#endif  // HC_WORKER_MODEL_TENSOR_SOURCE_H_
