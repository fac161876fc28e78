// CUDA implementations of every kernel family (kernels/*.h) over device
// memory: every pointer in the argument structs, the int32 index arrays
// included, is device memory of `device`. Work is enqueued on `stream` and is
// asynchronous: a call returns once its kernels are launched; the results are
// visible to later work on the same stream (synchronise the stream before
// reading them on the host). Launch-configuration errors are invariants
// (HC_CHECK); faults inside kernels surface at the next synchronisation.
//
// Thread-safety: the objects are immutable after creation; calls may come from
// any thread (each call makes `device` current on the calling thread first).
// Calls from several threads on one stream are not ordered relative to each
// other.
//
// This header does not include CUDA headers, so plain C++ code can use it.
#ifndef HC_KERNELS_CUDA_CUDA_KERNELS_H_
#define HC_KERNELS_CUDA_CUDA_KERNELS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/kernels.h"

struct CUstream_st;  // = cudaStream_t

namespace hc::kernels {

using CudaStream = CUstream_st*;

// Number of usable CUDA devices; 0 with `why` set when there is no driver or
// no device (never fails otherwise).
int CudaDeviceCount(std::string* why = nullptr);

struct CudaKernelOptions {
  int device = 0;
  CudaStream stream = nullptr;  // not owned; nullptr is the legacy default stream
};

// Element type of the mixed-precision GEMM operands.
enum class GemmInputType { kF32, kBF16, kF16 };

// C[m, n] (+)= A[m, k] * B[n, k]^T with A and B of `input_type` (bf16 / fp16
// stored as uint16 bit patterns), C fp32, accumulation in fp32 (cuBLAS
// GemmEx, CUBLAS_COMPUTE_32F). Same row-major conventions as GemmArgs.
struct MixedGemmArgs {
  int m = 0;
  int n = 0;
  int k = 0;
  GemmInputType input_type = GemmInputType::kBF16;
  const void* a = nullptr;
  int64_t lda = 0;
  const void* b = nullptr;
  int64_t ldb = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  bool accumulate = false;
};

// The cuBLAS GEMM: fp32 Gemm() (cublasSgemm, true fp32 math, no TF32) plus the
// bf16 / fp16 paths.
class CudaGemmKernel : public GemmKernel {
 public:
  virtual void MixedGemm(const MixedGemmArgs& args) const = 0;
};

absl::StatusOr<std::unique_ptr<CudaGemmKernel>> CreateCudaGemm(const CudaKernelOptions& options);

// UNAVAILABLE when the device cannot be used (no driver, no such device).
absl::StatusOr<KernelSet> CreateCudaKernels(const CudaKernelOptions& options);

// Device-side conversions used by the bf16 / fp16 GEMM paths and their tests:
// dst[i] = round-to-nearest-even(src[i]) as bf16 / fp16 bits. Enqueued on
// `stream` of the current device.
void CudaConvertF32(const float* src, uint16_t* dst, int64_t n, GemmInputType to,
                    CudaStream stream);

}  // namespace hc::kernels

#endif  // HC_KERNELS_CUDA_CUDA_KERNELS_H_
