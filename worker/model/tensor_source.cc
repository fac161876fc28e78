#include "worker/model/tensor_source.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "worker/model/half.h"

namespace hc::model {

absl::StatusOr<std::vector<float>> LoadF32(const TensorSource& source, std::string_view name,
                                           const std::vector<int64_t>& expected_shape) {
  HC_ASSIGN_OR_RETURN(TensorView view, source.Get(name));
  if (view.shape != expected_shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", std::string(name), "': expected shape [", absl::StrJoin(expected_shape, ", "),
        "], checkpoint has [", absl::StrJoin(view.shape, ", "), "]"));
  }
  size_t numel = 1;
  for (int64_t d : view.shape) numel *= static_cast<size_t>(d);
  if (view.num_bytes != numel * runtime::DTypeSize(view.dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", std::string(name), "': ", view.num_bytes, " bytes for ", numel, " elements"));
  }
  std::vector<float> out(numel);
  const auto* src = static_cast<const unsigned char*>(view.data);
  switch (view.dtype) {
    case runtime::DType::kF32:
      std::memcpy(out.data(), src, numel * sizeof(float));
      break;
    case runtime::DType::kBF16:
    case runtime::DType::kF16: {
      const bool bf16 = view.dtype == runtime::DType::kBF16;
      for (size_t i = 0; i < numel; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = bf16 ? Bf16ToF32(h) : F16ToF32(h);
      }
      break;
    }
  }
  return out;
}

}  // namespace hc::model
