// Internal to kernels/cpu: what the fp32 GEMM (gemm_cpu.cc) and the bf16-weight
// GEMM paths (gemm_bf16_cpu.cc) share.
#ifndef HC_KERNELS_CPU_GEMM_INTERNAL_H_
#define HC_KERNELS_CPU_GEMM_INTERNAL_H_

#include "absl/status/statusor.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/gemm.h"

namespace hc::kernels::internal {

// One bf16-weight GEMM path. REQUIRES: m, n, k > 0 (the caller handles the
// trivial shapes).
using Bf16GemmFn = void (*)(const GemmBf16Args&);

// The function behind `impl` on this CPU; UNAVAILABLE naming the missing CPU
// feature when a forced path cannot run here.
absl::StatusOr<Bf16GemmFn> SelectBf16Gemm(CpuBf16GemmImpl impl);

// The packed, register-blocked fp32 path of gemm_cpu.cc over a bf16 B, widened
// to fp32 while packing (A rounded to bf16 while packing). `avx2` selects the
// AVX2+FMA micro-kernel.
void PackedGemmBf16(const GemmBf16Args& g, bool avx2);

// gemm_avx512_cpu.cc: the AVX-512 prefill kernels (unpacked weight rows
// broadcast against activations packed as transposed 16-row panels). REQUIRE
// m, n, k > 0 and a CPU with avx512f (fp32) / avx512f, avx512bw and
// avx512_bf16 (bf16; A rounded to bf16 while packing, the GemmBf16Args
// contract).
bool CpuHasAvx512F();
void Avx512PackedGemmF32(const GemmArgs& g);
// m <= 8 (decode): dot-product tiles on zmm, the weight streamed once.
void Avx512SmallMGemmF32(const GemmArgs& g);
void Avx512PackedGemmBf16(const GemmBf16Args& g);

}  // namespace hc::kernels::internal

#endif  // HC_KERNELS_CPU_GEMM_INTERNAL_H_
