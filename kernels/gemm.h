// GEMM family: C[M, N] (+)= A[M, K] * B[N, K]^T in fp32.
//
// B is stored [N, K] row-major, i.e. the [out_features, in_features] layout of
// a Hugging Face / PyTorch Linear weight, so `y = x W^T` is Gemm with A = x,
// B = W. All matrices are row-major with explicit leading dimensions (elements
// between consecutive rows), so column blocks of wider buffers can be used.
#ifndef HC_KERNELS_GEMM_H_
#define HC_KERNELS_GEMM_H_

#include <cstdint>

namespace hc::kernels {

struct GemmArgs {
  int m = 0;
  int n = 0;
  int k = 0;
  const float* a = nullptr;  // [m, k], row stride lda >= k
  int64_t lda = 0;
  const float* b = nullptr;  // [n, k], row stride ldb >= k
  int64_t ldb = 0;
  float* c = nullptr;  // [m, n], row stride ldc >= n; must not alias a or b
  int64_t ldc = 0;
  bool accumulate = false;  // false: C = A B^T; true: C += A B^T
};

// The same product with B (the weight) stored as bfloat16 bit patterns:
// fp32 A and C, fp32 accumulation. Every implementation rounds A to bf16
// (round-to-nearest-even) on the way, as bf16 hardware paths do (AVX512-BF16
// dot products, cuBLAS bf16 GEMM): products of bf16 values are exact in fp32,
// so for the same inputs results differ between paths and between values of m
// only by the fp32 summation order, as for Gemm.
struct GemmBf16Args {
  int m = 0;
  int n = 0;
  int k = 0;
  const float* a = nullptr;  // [m, k], row stride lda >= k
  int64_t lda = 0;
  const uint16_t* b = nullptr;  // [n, k] bf16, row stride ldb >= k
  int64_t ldb = 0;
  float* c = nullptr;  // [m, n], row stride ldc >= n; must not alias a or b
  int64_t ldc = 0;
  bool accumulate = false;
};

// Thread-safety: implementations are stateless after construction; concurrent
// calls on distinct outputs are safe (tensor-parallel ranks share one instance).
//
// Column-split invariance (what intra-op parallelism relies on, see
// CreateParallelGemm in kernels/cpu/cpu_kernels.h): C[i, j] must be bitwise
// the same whether j is computed in one call over all n columns or in a call
// over a column range [j0, j1) that contains j, with j0 a multiple of 16
// (same m, k, A, accumulate). The summation order of one element may depend on
// m and k, and on j mod 16, but not on n or j0.
class GemmKernel {
 public:
  virtual ~GemmKernel() = default;
  // REQUIRES: m, n, k >= 0 (any of them may be 0); leading dimensions as above.
  virtual void Gemm(const GemmArgs& args) const = 0;
  // Same contract with a bf16 B.
  virtual void GemmBf16(const GemmBf16Args& args) const = 0;
  // Short name of the implementation, e.g. "openblas" or "blocked-avx2".
  virtual const char* name() const = 0;
};

}  // namespace hc::kernels

#endif  // HC_KERNELS_GEMM_H_
