// Element types of weights and cache tensors. 16-bit types are stored as
// their uint16 bit patterns (kernels/half.h converts).
#ifndef HC_KERNELS_DTYPE_H_
#define HC_KERNELS_DTYPE_H_

#include <cstddef>
#include <cstdint>

namespace hc::kernels {

enum class DType : uint8_t { kF32 = 0, kBF16 = 1, kF16 = 2 };

constexpr size_t DTypeSize(DType t) { return t == DType::kF32 ? 4 : 2; }

// "float32", "bfloat16", "float16" (the names of config.json's torch_dtype).
constexpr const char* TorchDTypeName(DType t) {
  return t == DType::kF32 ? "float32" : t == DType::kBF16 ? "bfloat16" : "float16";
}

}  // namespace hc::kernels

#endif  // HC_KERNELS_DTYPE_H_
