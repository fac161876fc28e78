#include "kernels/cpu/cpu_kernels.h"

#include "common/status_macros.h"

#ifdef HC_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace hc::kernels {

absl::StatusOr<KernelSet> CreateCpuKernels(const CpuKernelOptions& options) {
  KernelSet set;
#ifdef HC_HAVE_OPENBLAS
  if (options.openblas_threads > 0) openblas_set_num_threads(options.openblas_threads);
#endif
  HC_ASSIGN_OR_RETURN(set.gemm, CreateCpuGemm(options.gemm, options.bf16_gemm));
  set.norm = CreateCpuNormKernels();
  set.rope = CreateCpuRopeKernel();
  set.elementwise = CreateCpuElementwiseKernels();
  set.conv1d = CreateCpuConv1dKernels();
  set.mamba2 = CreateCpuMamba2Kernels();
  set.attention = CreateCpuAttentionKernels();
  return set;
}

}  // namespace hc::kernels
