// The --dtype / --kv_dtype choices of a worker: what the flags say, resolved
// against the checkpoint.
#ifndef HC_WORKER_MODEL_WEIGHT_DTYPE_H_
#define HC_WORKER_MODEL_WEIGHT_DTYPE_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "worker/model/tensor_source.h"
#include "worker/runtime/cache_memory.h"

namespace hc::model {

struct ModelDTypes {
  runtime::DType weights = runtime::DType::kF32;
  runtime::DType kv = runtime::DType::kF32;
};

// `dtype`: "auto", "float32" or "bfloat16". auto is config.json's torch_dtype
// in `model_dir` when present, else the stored dtype of
// model.embed_tokens.weight; a float16 checkpoint resolves to float32 (exact;
// there is no fp16 compute path; --dtype bfloat16 halves it at bf16 rounding).
// `kv_dtype`: "auto" (= the weights' dtype), "float32" or "bfloat16".
// INVALID_ARGUMENT naming the flag and value for anything else, or for a
// torch_dtype that is not float32 / bfloat16 / float16.
absl::StatusOr<ModelDTypes> ResolveModelDTypes(std::string_view dtype, std::string_view kv_dtype,
                                               const std::string& model_dir,
                                               const TensorSource& checkpoint);

}  // namespace hc::model

#endif  // HC_WORKER_MODEL_WEIGHT_DTYPE_H_
