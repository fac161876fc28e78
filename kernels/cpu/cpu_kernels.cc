#include "kernels/cpu/cpu_kernels.h"

#include <memory>
#include <utility>

#include "common/status_macros.h"

#ifdef HC_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace hc::kernels {

bool CpuGemmSplitInvariant(CpuGemmImpl impl) {
  switch (impl) {
    case CpuGemmImpl::kAuto:  // own kernels only
    case CpuGemmImpl::kBlocked:
    case CpuGemmImpl::kAvx512:
      return true;
    case CpuGemmImpl::kOpenBlas:
      return false;
  }
  return false;
}

absl::StatusOr<KernelSet> CreateCpuKernels(const CpuKernelOptions& options) {
  KernelSet set;
#ifdef HC_HAVE_OPENBLAS
  if (options.openblas_threads > 0) openblas_set_num_threads(options.openblas_threads);
#endif
  HC_ASSIGN_OR_RETURN(std::unique_ptr<GemmKernel> gemm,
                      CreateCpuGemm(options.gemm, options.bf16_gemm));
  set.gemm = CreateParallelGemm(std::move(gemm),
                                {.min_macs = options.grain.gemm_macs,
                                 .fp32_split_invariant = CpuGemmSplitInvariant(options.gemm)});
  set.norm = CreateCpuNormKernels(options.grain.pointwise_elems);
  set.rope = CreateCpuRopeKernel(options.grain.pointwise_elems);
  set.elementwise = CreateCpuElementwiseKernels(options.grain.pointwise_elems);
  set.conv1d = CreateCpuConv1dKernels();
  set.mamba2 = CreateCpuMamba2Kernels();
  set.attention = CreateCpuAttentionKernels();
  return set;
}

}  // namespace hc::kernels
