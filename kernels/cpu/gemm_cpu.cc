// CPU GEMM: the project's own AVX2+FMA blocked kernel (the fallback on CPUs
// without avx512f) and the optional OpenBLAS path (forced only: its results
// depend on how N is split across threads). Which path runs by default is
// decided from CPUID in CreateCpuGemm (cpu_kernels.h): the AVX-512 kernels of
// gemm_avx512_cpu.cc when the CPU has avx512f. The bf16-weight paths live in
// gemm_bf16_cpu.cc.
//
// Own kernel, in the BLIS/GotoBLAS structure: B (the [N, K] weight) is packed
// per (KC x NC) block into K-major micro-panels of NR columns, A per (MC x KC)
// block into micro-panels of MR rows; an MR x NR register-blocked micro-kernel
// runs over them (6 x 16 with AVX2+FMA: 12 accumulators, 2 B loads and 6
// broadcasts per k). Small M (decode batches, up to 8 rows) skips packing and
// uses a dot-product kernel reading both operands along K. Single-threaded.
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "common/status_macros.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/gemm_internal.h"
#include "kernels/half.h"

#ifdef HC_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace hc::kernels {
namespace {

constexpr int kMr = 6;
constexpr int kNr = 16;
constexpr int kKc = 256;
constexpr int kMc = 96;     // multiple of kMr; packed A block (96 KiB) stays in L2
constexpr int kNc = 2048;   // multiple of kNr; packed B block (2 MiB) stays in L3
constexpr int kSmallM = 8;  // m <= kSmallM uses the dot-product path

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};

// Per-thread packing buffers (tensor-parallel ranks call concurrently).
struct PackBuffers {
  std::unique_ptr<float, FreeDeleter> a{
      static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kMc * kKc))};
  std::unique_ptr<float, FreeDeleter> b{
      static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kNc * kKc))};
};

PackBuffers& ThreadPackBuffers() {
  thread_local PackBuffers buffers;
  return buffers;
}

inline float ToF32(float x) { return x; }
inline float ToF32(uint16_t x) { return Bf16ToF32(x); }

// Packs rows [0, rows) x cols [0, kc) of a K-contiguous matrix (row stride ld)
// into fp32 panels of `width` rows: panel i holds [kc][width], zero padded.
// A bf16 source is widened here, once per packed block.
template <typename T>
void PackKMajor(const T* src, int64_t ld, int rows, int kc, int width, float* dst) {
  for (int r0 = 0; r0 < rows; r0 += width) {
    const int w = std::min(width, rows - r0);
    float* panel = dst + static_cast<int64_t>(r0) * kc;
    for (int r = 0; r < w; ++r) {
      const T* s = src + (r0 + r) * ld;
      for (int p = 0; p < kc; ++p) panel[p * width + r] = ToF32(s[p]);
    }
    for (int r = w; r < width; ++r) {
      for (int p = 0; p < kc; ++p) panel[p * width + r] = 0.0f;
    }
  }
}

// Stores an MR x NR tile `acc` (row-major, NR wide) into C (mr x nr valid).
inline void StoreTile(const float* acc, int mr, int nr, float* c, int64_t ldc, bool add) {
  for (int i = 0; i < mr; ++i) {
    float* crow = c + i * ldc;
    const float* arow = acc + i * kNr;
    if (add) {
      for (int j = 0; j < nr; ++j) crow[j] += arow[j];
    } else {
      for (int j = 0; j < nr; ++j) crow[j] = arow[j];
    }
  }
}

void MicroKernelGeneric(int kc, const float* ap, const float* bp, float* c, int64_t ldc, int mr,
                        int nr, bool add) {
  float acc[kMr * kNr] = {};
  for (int p = 0; p < kc; ++p) {
    const float* a = ap + p * kMr;
    const float* b = bp + p * kNr;
    for (int i = 0; i < kMr; ++i) {
      for (int j = 0; j < kNr; ++j) acc[i * kNr + j] += a[i] * b[j];
    }
  }
  StoreTile(acc, mr, nr, c, ldc, add);
}

void SmallMGeneric(const GemmArgs& g) {
  for (int i = 0; i < g.m; ++i) {
    const float* a = g.a + i * g.lda;
    for (int j = 0; j < g.n; ++j) {
      const float* b = g.b + j * g.ldb;
      float s = 0.0f;
      for (int p = 0; p < g.k; ++p) s += a[p] * b[p];
      float* c = g.c + i * g.ldc + j;
      *c = g.accumulate ? *c + s : s;
    }
  }
}

#if defined(__x86_64__)
#define HC_AVX2 __attribute__((target("avx2,fma")))

HC_AVX2 void MicroKernelAvx2(int kc, const float* ap, const float* bp, float* c, int64_t ldc,
                             int mr, int nr, bool add) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(bp);
    const __m256 b1 = _mm256_load_ps(bp + 8);
    __m256 a = _mm256_broadcast_ss(ap + 0);
    c00 = _mm256_fmadd_ps(a, b0, c00);
    c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(ap + 1);
    c10 = _mm256_fmadd_ps(a, b0, c10);
    c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(ap + 2);
    c20 = _mm256_fmadd_ps(a, b0, c20);
    c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(ap + 3);
    c30 = _mm256_fmadd_ps(a, b0, c30);
    c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(ap + 4);
    c40 = _mm256_fmadd_ps(a, b0, c40);
    c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(ap + 5);
    c50 = _mm256_fmadd_ps(a, b0, c50);
    c51 = _mm256_fmadd_ps(a, b1, c51);
    ap += kMr;
    bp += kNr;
  }
  const __m256 acc[kMr][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                              {c30, c31}, {c40, c41}, {c50, c51}};
  if (mr == kMr && nr == kNr) {
    for (int i = 0; i < kMr; ++i) {
      float* crow = c + i * ldc;
      if (add) {
        _mm256_storeu_ps(crow, _mm256_add_ps(_mm256_loadu_ps(crow), acc[i][0]));
        _mm256_storeu_ps(crow + 8, _mm256_add_ps(_mm256_loadu_ps(crow + 8), acc[i][1]));
      } else {
        _mm256_storeu_ps(crow, acc[i][0]);
        _mm256_storeu_ps(crow + 8, acc[i][1]);
      }
    }
    return;
  }
  alignas(32) float tile[kMr * kNr];
  for (int i = 0; i < kMr; ++i) {
    _mm256_store_ps(tile + i * kNr, acc[i][0]);
    _mm256_store_ps(tile + i * kNr + 8, acc[i][1]);
  }
  StoreTile(tile, mr, nr, c, ldc, add);
}

HC_AVX2 inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Dot-product path for small m: tiles of MA A rows x 4 B rows (MA <= 3, so
// at most 12 accumulators), both operands read along K, so B (the weight) is
// streamed once per tile of A rows without packing.
template <int MA>
HC_AVX2 void DotTileAvx2(const GemmArgs& g, int i0, int j0) {
  const int k8 = g.k & ~7;
  const float* a[MA];
  for (int r = 0; r < MA; ++r) a[r] = g.a + (i0 + r) * g.lda;
  const float* b[4];
  for (int q = 0; q < 4; ++q) b[q] = g.b + (j0 + q) * g.ldb;
  __m256 acc[MA][4];
  for (int r = 0; r < MA; ++r) {
    for (int q = 0; q < 4; ++q) acc[r][q] = _mm256_setzero_ps();
  }
  for (int p = 0; p < k8; p += 8) {
    const __m256 b0 = _mm256_loadu_ps(b[0] + p), b1 = _mm256_loadu_ps(b[1] + p);
    const __m256 b2 = _mm256_loadu_ps(b[2] + p), b3 = _mm256_loadu_ps(b[3] + p);
    for (int r = 0; r < MA; ++r) {
      const __m256 av = _mm256_loadu_ps(a[r] + p);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
      acc[r][2] = _mm256_fmadd_ps(av, b2, acc[r][2]);
      acc[r][3] = _mm256_fmadd_ps(av, b3, acc[r][3]);
    }
  }
  for (int r = 0; r < MA; ++r) {
    float* crow = g.c + (i0 + r) * g.ldc + j0;
    for (int q = 0; q < 4; ++q) {
      float v = HorizontalSum(acc[r][q]);
      for (int p = k8; p < g.k; ++p) v += a[r][p] * b[q][p];
      crow[q] = g.accumulate ? crow[q] + v : v;
    }
  }
}

HC_AVX2 void SmallMAvx2(const GemmArgs& g) {
  const int k8 = g.k & ~7;
  int j = 0;
  for (; j + 4 <= g.n; j += 4) {
    int i = 0;
    for (; i + 3 <= g.m; i += 3) DotTileAvx2<3>(g, i, j);
    if (g.m - i == 2) DotTileAvx2<2>(g, i, j);
    if (g.m - i == 1) DotTileAvx2<1>(g, i, j);
  }
  for (; j < g.n; ++j) {  // remaining B rows, one at a time
    const float* b = g.b + j * g.ldb;
    for (int i = 0; i < g.m; ++i) {
      const float* a = g.a + i * g.lda;
      __m256 s = _mm256_setzero_ps();
      for (int p = 0; p < k8; p += 8) {
        s = _mm256_fmadd_ps(_mm256_loadu_ps(a + p), _mm256_loadu_ps(b + p), s);
      }
      float r = HorizontalSum(s);
      for (int p = k8; p < g.k; ++p) r += a[p] * b[p];
      float* c = g.c + i * g.ldc + j;
      *c = g.accumulate ? *c + r : r;
    }
  }
}

#endif  // __x86_64__

using MicroKernelFn = void (*)(int, const float*, const float*, float*, int64_t, int, int, bool);

// The packed path (m > kSmallM) over an fp32 or bf16 B.
// round_a: A is rounded to bf16 as it is packed (the GemmBf16 contract).
template <typename T>
void PackedGemm(int m, int n, int k, const float* a, int64_t lda, const T* b, int64_t ldb, float* c,
                int64_t ldc, bool accumulate, bool avx2, bool round_a) {
#if defined(__x86_64__)
  const MicroKernelFn micro = avx2 ? MicroKernelAvx2 : MicroKernelGeneric;
#else
  const MicroKernelFn micro = MicroKernelGeneric;
#endif
  PackBuffers& buf = ThreadPackBuffers();
  for (int jc = 0; jc < n; jc += kNc) {
    const int nc = std::min(kNc, n - jc);
    for (int pc = 0; pc < k; pc += kKc) {
      const int kc = std::min(kKc, k - pc);
      const bool add = accumulate || pc > 0;
      PackKMajor(b + jc * ldb + pc, ldb, nc, kc, kNr, buf.b.get());
      for (int ic = 0; ic < m; ic += kMc) {
        const int mc = std::min(kMc, m - ic);
        PackKMajor(a + ic * lda + pc, lda, mc, kc, kMr, buf.a.get());
        if (round_a) {
          float* ap = buf.a.get();
          const int64_t packed = static_cast<int64_t>((mc + kMr - 1) / kMr) * kMr * kc;
          for (int64_t i = 0; i < packed; ++i) ap[i] = Bf16ToF32(F32ToBf16(ap[i]));
        }
        for (int jr = 0; jr < nc; jr += kNr) {
          const float* bp = buf.b.get() + static_cast<int64_t>(jr) * kc;
          const int nr = std::min(kNr, nc - jr);
          for (int ir = 0; ir < mc; ir += kMr) {
            const float* ap = buf.a.get() + static_cast<int64_t>(ir) * kc;
            micro(kc, ap, bp, c + (ic + ir) * ldc + jc + jr, ldc, std::min(kMr, mc - ir), nr, add);
          }
        }
      }
    }
  }
}

// m, n > 0 and k <= 0: C = 0 unless accumulating. Returns whether the call is
// complete (nothing left to compute).
bool TrivialGemm(int m, int n, int k, float* c, int64_t ldc, bool accumulate) {
  if (m <= 0 || n <= 0) return true;
  if (k > 0) return false;
  if (!accumulate) {
    for (int i = 0; i < m; ++i) std::fill_n(c + i * ldc, n, 0.0f);
  }
  return true;
}

// The bf16-weight GEMM every CPU GemmKernel shares (chosen once per kernel).
struct Bf16Path {
  internal::Bf16GemmFn fn;
  void Run(const GemmBf16Args& g) const {
    if (!TrivialGemm(g.m, g.n, g.k, g.c, g.ldc, g.accumulate)) fn(g);
  }
};

class BlockedGemm final : public GemmKernel {
 public:
  // avx512: m > kSmallM runs the AVX-512 kernel of gemm_avx512_cpu.cc
  // (REQUIRES: CpuHasAvx512()).
  BlockedGemm(internal::Bf16GemmFn bf16, bool avx512)
      : avx2_(CpuHasAvx2Fma()), avx512_(avx512), bf16_{bf16} {}

  const char* name() const override {
    if (avx512_) return "avx512";
    return avx2_ ? "blocked-avx2" : "blocked-generic";
  }

  void Gemm(const GemmArgs& g) const override {
    if (TrivialGemm(g.m, g.n, g.k, g.c, g.ldc, g.accumulate)) return;
    if (g.m <= kSmallM) {
      if (avx512_) return internal::Avx512SmallMGemmF32(g);
#if defined(__x86_64__)
      if (avx2_) return SmallMAvx2(g);
#endif
      return SmallMGeneric(g);
    }
    if (avx512_) return internal::Avx512PackedGemmF32(g);
    PackedGemm(g.m, g.n, g.k, g.a, g.lda, g.b, g.ldb, g.c, g.ldc, g.accumulate, avx2_,
               /*round_a=*/false);
  }

  void GemmBf16(const GemmBf16Args& g) const override { bf16_.Run(g); }

 private:
  bool avx2_;
  bool avx512_;
  Bf16Path bf16_;
};

#ifdef HC_HAVE_OPENBLAS
class OpenBlasGemm final : public GemmKernel {
 public:
  explicit OpenBlasGemm(internal::Bf16GemmFn bf16) : bf16_{bf16} {}
  const char* name() const override { return "openblas"; }
  // OpenBLAS' sbgemm would need bf16 activations too; the own bf16 kernels
  // serve every CPU GemmKernel.
  void GemmBf16(const GemmBf16Args& g) const override { bf16_.Run(g); }
  void Gemm(const GemmArgs& g) const override {
    if (g.m <= 0 || g.n <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.m, g.n, g.k, 1.0f, g.a,
                static_cast<int>(g.lda), g.b, static_cast<int>(g.ldb), g.accumulate ? 1.0f : 0.0f,
                g.c, static_cast<int>(g.ldc));
  }

 private:
  Bf16Path bf16_;
};

#endif

}  // namespace

bool CpuHasOpenBlas() {
#ifdef HC_HAVE_OPENBLAS
  return true;
#else
  return false;
#endif
}

bool CpuHasAvx512() { return internal::CpuHasAvx512F(); }

bool CpuHasAvx2Fma() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

namespace internal {

void PackedGemmBf16(const GemmBf16Args& g, bool avx2) {
  PackedGemm(g.m, g.n, g.k, g.a, g.lda, g.b, g.ldb, g.c, g.ldc, g.accumulate, avx2,
             /*round_a=*/true);
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<GemmKernel>> CreateCpuGemm(CpuGemmImpl impl,
                                                          CpuBf16GemmImpl bf16_impl) {
  HC_ASSIGN_OR_RETURN(const internal::Bf16GemmFn bf16, internal::SelectBf16Gemm(bf16_impl));
  switch (impl) {
    case CpuGemmImpl::kBlocked:
      return std::make_unique<BlockedGemm>(bf16, /*avx512=*/false);
    case CpuGemmImpl::kAvx512:
      if (!CpuHasAvx512()) {
        return absl::UnavailableError("the avx512 GEMM path needs a CPU with avx512f");
      }
      return std::make_unique<BlockedGemm>(bf16, /*avx512=*/true);
    case CpuGemmImpl::kOpenBlas:
#ifdef HC_HAVE_OPENBLAS
      return std::make_unique<OpenBlasGemm>(bf16);
#else
      return absl::UnavailableError("this build has no OpenBLAS (HC_HAVE_OPENBLAS is off)");
#endif
    case CpuGemmImpl::kAuto:  // own kernels only: OpenBLAS breaks the column-split contract
      return std::make_unique<BlockedGemm>(bf16, /*avx512=*/CpuHasAvx512());
  }
  return absl::InvalidArgumentError("unknown CpuGemmImpl");
}

}  // namespace hc::kernels
