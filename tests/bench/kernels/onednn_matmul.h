// oneDNN's matmul primitive on the GEMM shapes of kernels_bench (benchmark
// only: the kernels never call oneDNN; docs/kernels.md says why).
#ifndef HC_TESTS_BENCH_KERNELS_ONEDNN_MATMUL_H_
#define HC_TESTS_BENCH_KERNELS_ONEDNN_MATMUL_H_

#include <cstdint>
#include <memory>
#include <string>

namespace hc::kernels::bench {

// C[m, n] = A[m, k] B[n, k]^T with B in the HF weight layout (plain, not
// reordered), fp32 A / B, or bf16 A / B (A converted to bf16 by the caller:
// oneDNN 2.6 has no fp32 x bf16 matmul) with fp32 C.
class OneDnnMatmul {
 public:
  // nullptr when oneDNN cannot build the primitive; `why` says why.
  static std::unique_ptr<OneDnnMatmul> Create(int m, int n, int k, bool bf16, std::string* why);
  ~OneDnnMatmul();
  void Run(const void* a, const void* b, float* c);
  // oneDNN's implementation name, e.g. "brg:avx512_core_bf16".
  const std::string& impl() const { return impl_; }

 private:
  OneDnnMatmul() = default;
  struct State;
  std::unique_ptr<State> state_;
  std::string impl_;
};

}  // namespace hc::kernels::bench

#endif  // HC_TESTS_BENCH_KERNELS_ONEDNN_MATMUL_H_
