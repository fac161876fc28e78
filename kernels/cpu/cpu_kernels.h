// CPU implementations of every kernel family (fp32, host memory).
#ifndef HC_KERNELS_CPU_CPU_KERNELS_H_
#define HC_KERNELS_CPU_CPU_KERNELS_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "kernels/kernels.h"

namespace hc::kernels {

// Every own kernel keeps the column-split contract (docs/kernels.md): each C
// element's value depends on K (and the path chosen by m), never on N or on
// which columns a call covers, so callers may split N across threads.
enum class CpuGemmImpl {
  kAuto,      // measured choice (kernels_bench, docs/kernels.md): kAvx512 when the CPU
              // has avx512f, else kBlocked (own kernels only, see kOpenBlas)
  kOpenBlas,  // cblas_sgemm; only when built with HC_HAVE_OPENBLAS. Its bits depend on
              // the column split (measured), so it is never chosen automatically
  kBlocked,   // the project's own packed, register-blocked kernel (AVX2+FMA when the
              // CPU has it, portable C++ otherwise)
  kAvx512,    // own AVX-512 kernels (gemm_avx512_cpu.cc): dot-product tiles for
              // m <= 8, weight rows broadcast against packed activations above;
              // needs avx512f
};

// The bf16-weight GEMM (GemmKernel::GemmBf16), chosen at run time from CPUID.
enum class CpuBf16GemmImpl {
  kAuto,        // measured choice (kernels_bench, docs/kernels.md): kAvx512Bf16 with
                // AVX512-BF16, else kWidenAvx2 when the CPU has AVX2+FMA, else kScalar
  kAvx512Bf16,  // vdpbf16ps: dot products for m <= 8, the packed AVX-512 kernel of
                // gemm_avx512_cpu.cc above
  kWidenAvx2,   // weights widened bf16 -> fp32 per tile, fp32 FMA (AVX2+FMA; any AVX-512
                // CPU has it)
  kScalar,      // portable C++ (widening, no intrinsics)
  // Every path rounds the activations to bf16 (GemmBf16Args).
};

// Intra-op parallelism (common/intra_op.h): the least work one range of a
// ParallelFor gets, so that a call too small to repay the dispatch (about a
// microsecond with spinning helpers) runs on one thread. Tests set both to 1
// so that every call that can be split is split.
struct CpuParallelGrain {
  int64_t gemm_macs = int64_t{1} << 16;        // multiply-adds per GEMM column block range
  int64_t pointwise_elems = int64_t{1} << 14;  // elements per range: norms, RoPE, element-wise
};

struct CpuKernelOptions {
  CpuGemmImpl gemm = CpuGemmImpl::kAuto;
  CpuBf16GemmImpl bf16_gemm = CpuBf16GemmImpl::kAuto;
  // When > 0 and OpenBLAS is linked, sets OpenBLAS' process-wide thread count.
  // Default 1: the model already runs one thread per tensor-parallel rank
  // (TensorParallelModel) and each rank's GEMMs stay on its thread; an OpenBLAS
  // pool on top would compete with those threads for the same cores, and its
  // size is process-wide, so it cannot be matched to one rank.
  int openblas_threads = 1;
  CpuParallelGrain grain;
};

// True when this build links OpenBLAS.
bool CpuHasOpenBlas();

// Whether this CPU can run the AVX512-BF16 path (avx512f, avx512bw and
// avx512_bf16) and the AVX2 widening path (avx2 and fma), from CPUID; whether
// it has avx512f (CpuGemmImpl::kAvx512).
bool CpuHasAvx512Bf16();
bool CpuHasAvx2Fma();
bool CpuHasAvx512();

// UNAVAILABLE when kOpenBlas is requested in a build without OpenBLAS, or a
// bf16 path this CPU lacks.
absl::StatusOr<std::unique_ptr<GemmKernel>> CreateCpuGemm(
    CpuGemmImpl impl, CpuBf16GemmImpl bf16 = CpuBf16GemmImpl::kAuto);

// Short name of the bf16 path `impl` resolves to on this CPU ("avx512bf16",
// "widen-avx2", "scalar").
const char* CpuBf16GemmName(CpuBf16GemmImpl impl);

struct ParallelGemmOptions {
  int64_t min_macs = CpuParallelGrain{}.gemm_macs;
  // Whether the wrapped kernel's Gemm / GemmBf16 keep gemm.h's column-split
  // invariance (CpuGemmSplitInvariant says so for the CPU implementations).
  bool fp32_split_invariant = true;
  bool bf16_split_invariant = true;
};

// Wraps a single-threaded GEMM: each call is split over N (B rows, C columns)
// and run by ParallelFor on the calling thread's intra-op pool (inline when
// none is bound). M is not split: the paths choose their kernel by m (small-m
// dot products vs packed), so splitting M would change a row's summation.
//  - Split-invariant kernel: ranges of whole 16-column blocks, at least
//    min_macs multiply-adds each, one inner call per range; results are
//    bitwise the inner kernel's for any thread count.
//  - Otherwise (OpenBLAS: its results change with how N is cut): N is cut
//    into chunks that depend only on (m, n, k, min_macs) — at most 12, whole
//    16-column blocks — one inner call per chunk, also on one thread; results
//    are bitwise the same for any thread count, though not the unwrapped
//    kernel's.
std::unique_ptr<GemmKernel> CreateParallelGemm(std::unique_ptr<GemmKernel> inner,
                                               const ParallelGemmOptions& options = {});

// Whether CreateCpuGemm(impl, any bf16 path) keeps gemm.h's column-split
// invariance for fp32 (only kOpenBlas does not; kAuto never picks it). Every
// bf16 path does.
bool CpuGemmSplitInvariant(CpuGemmImpl impl);

// The kernels use the calling thread's intra-op pool through ParallelFor
// (GEMM via CreateParallelGemm; norms, RoPE and element-wise over tokens;
// attention, conv1d and Mamba2 where their own files split work), with
// results bitwise independent of the thread count.
absl::StatusOr<KernelSet> CreateCpuKernels(const CpuKernelOptions& options = {});

// Per-family factories (used by CreateCpuKernels and by tests).
// `min_elems`: CpuParallelGrain::pointwise_elems.
std::unique_ptr<NormKernels> CreateCpuNormKernels(
    int64_t min_elems = CpuParallelGrain{}.pointwise_elems);
std::unique_ptr<RopeKernel> CreateCpuRopeKernel(
    int64_t min_elems = CpuParallelGrain{}.pointwise_elems);
std::unique_ptr<ElementwiseKernels> CreateCpuElementwiseKernels(
    int64_t min_elems = CpuParallelGrain{}.pointwise_elems);
std::unique_ptr<Conv1dKernels> CreateCpuConv1dKernels();
std::unique_ptr<Mamba2Kernels> CreateCpuMamba2Kernels();
std::unique_ptr<AttentionKernels> CreateCpuAttentionKernels();

}  // namespace hc::kernels

#endif  // HC_KERNELS_CPU_CPU_KERNELS_H_
