// The attention, SSD and norm kernels with an explicit instruction set, so tests
// and benchmarks can run every path this CPU supports (CreateCpuKernels and
// the factories of cpu_kernels.h use SimdWidth::kAuto).
#ifndef HC_KERNELS_CPU_CPU_KERNELS_SIMD_H_
#define HC_KERNELS_CPU_CPU_KERNELS_SIMD_H_

#include <memory>

#include "kernels/attention.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/simd_tile.h"
#include "kernels/mamba2.h"
#include "kernels/norm.h"

namespace hc::kernels {

// A width this CPU lacks falls back to the widest it has (simd::SimdLanes).
std::unique_ptr<AttentionKernels> CreateCpuAttentionKernels(simd::SimdWidth width);
std::unique_ptr<Mamba2Kernels> CreateCpuMamba2Kernels(simd::SimdWidth width);
std::unique_ptr<NormKernels> CreateCpuNormKernels(
    simd::SimdWidth width, int64_t min_elems = CpuParallelGrain{}.pointwise_elems);

}  // namespace hc::kernels

#endif  // HC_KERNELS_CPU_CPU_KERNELS_SIMD_H_
