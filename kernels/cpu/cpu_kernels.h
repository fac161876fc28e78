// CPU implementations of every kernel family (fp32, host memory).
#ifndef HC_KERNELS_CPU_CPU_KERNELS_H_
#define HC_KERNELS_CPU_CPU_KERNELS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/kernels.h"

namespace hc::kernels {

enum class CpuGemmImpl {
  kAuto,      // measured choice (kernels_bench): kBlocked for m <= 3 (decode), OpenBLAS
              // for larger m when linked; kBlocked everywhere without OpenBLAS
  kOpenBlas,  // cblas_sgemm; only when built with HC_HAVE_OPENBLAS
  kBlocked,   // the project's own packed, register-blocked kernel (AVX2+FMA when the
              // CPU has it, portable C++ otherwise)
};

struct CpuKernelOptions {
  CpuGemmImpl gemm = CpuGemmImpl::kAuto;
  // When > 0 and OpenBLAS is linked, sets OpenBLAS' process-wide thread count.
  // Default 1: the model already runs one thread per tensor-parallel rank
  // (TensorParallelModel) and each rank's GEMMs stay on its thread; an OpenBLAS
  // pool on top would compete with those threads for the same cores, and its
  // size is process-wide, so it cannot be matched to one rank.
  int openblas_threads = 1;
};

// True when this build links OpenBLAS.
bool CpuHasOpenBlas();

// UNAVAILABLE when kOpenBlas is requested in a build without OpenBLAS.
absl::StatusOr<std::unique_ptr<GemmKernel>> CreateCpuGemm(CpuGemmImpl impl);

absl::StatusOr<KernelSet> CreateCpuKernels(const CpuKernelOptions& options = {});

// Per-family factories (used by CreateCpuKernels and by tests).
std::unique_ptr<NormKernels> CreateCpuNormKernels();
std::unique_ptr<RopeKernel> CreateCpuRopeKernel();
std::unique_ptr<ElementwiseKernels> CreateCpuElementwiseKernels();
std::unique_ptr<Conv1dKernels> CreateCpuConv1dKernels();
std::unique_ptr<Mamba2Kernels> CreateCpuMamba2Kernels();
std::unique_ptr<AttentionKernels> CreateCpuAttentionKernels();

}  // namespace hc::kernels

#endif  // HC_KERNELS_CPU_CPU_KERNELS_H_
