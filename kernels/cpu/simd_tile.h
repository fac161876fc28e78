// Portable SIMD building blocks for the attention and SSD kernels: a float
// vector of W lanes (GCC/clang vector extensions), a vectorized exp, and a
// register-blocked small matrix product over row-major tiles.
//
// One source, three instruction sets: each kernel is a template on W,
// instantiated inside a wrapper with __attribute__((target(...), flatten)),
// so everything it calls is inlined and compiled for that wrapper's ISA
// (W = 16: AVX-512, W = 8: AVX2 + FMA, W = 4: the baseline, SSE2 on x86-64
// or NEON elsewhere). The wrapper is picked once from CPUID (SimdWidthFor).
//
// Determinism: every output element of TileGemm is one chain of multiply-adds
// over k in increasing order, whatever the row or column blocking, so a row's
// result does not depend on which other rows share its tile. Within one ISA
// results are bitwise reproducible; across ISAs they differ by rounding (FMA
// contraction, lane counts of reductions).
#ifndef HC_KERNELS_CPU_SIMD_TILE_H_
#define HC_KERNELS_CPU_SIMD_TILE_H_

#include <cstdint>
#include <cstring>

// 64-byte vectors in functions compiled without AVX-512 change the calling
// convention; they are always inlined into a wrapper of the right ISA.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define HC_SIMD_INLINE inline __attribute__((always_inline))

#if defined(__x86_64__)
#define HC_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"), flatten))
#define HC_TARGET_AVX2 __attribute__((target("avx2,fma"), flatten))
#endif

namespace hc::kernels::simd {

// Which instruction set the attention and SSD kernels run.
enum class SimdWidth {
  kAuto,      // the widest this CPU runs
  kAvx512,    // W = 16 (avx512f/vl/bw/dq)
  kAvx2,      // W = 8 (avx2 + fma)
  kPortable,  // W = 4, no ISA extension
};

// Lanes W of `width` on this CPU: kAuto resolves from CPUID; a width the CPU
// lacks falls back to the widest it has below it.
inline int SimdLanes(SimdWidth width) {
#if defined(__x86_64__)
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if ((width == SimdWidth::kAuto || width == SimdWidth::kAvx512) && avx512) return 16;
  if (width != SimdWidth::kPortable && avx2) return 8;
#else
  (void)width;
#endif
  return 4;
}

template <int W>
struct VecTypes {
  typedef float F __attribute__((vector_size(W * sizeof(float))));
  typedef int32_t I __attribute__((vector_size(W * sizeof(float))));
};
template <int W>
using Vf = typename VecTypes<W>::F;
template <int W>
using Vi = typename VecTypes<W>::I;

template <int W>
HC_SIMD_INLINE Vf<W> Load(const float* p) {
  Vf<W> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <int W>
HC_SIMD_INLINE void Store(float* p, Vf<W> v) {
  std::memcpy(p, &v, sizeof v);
}
// Written lane by lane: compiles to one broadcast (a vector + scalar form
// would add 0.0f first, a scalar add that must be kept for -0.0f).
template <int W>
HC_SIMD_INLINE Vf<W> Splat(float x) {
  Vf<W> v;
  for (int i = 0; i < W; ++i) v[i] = x;
  return v;
}
// Lane-wise select: mask lanes are all ones or zero.
template <int W>
HC_SIMD_INLINE Vf<W> Select(Vi<W> mask, Vf<W> a, Vf<W> b) {
  return (Vf<W>)((mask & (Vi<W>)a) | (~mask & (Vi<W>)b));
}
template <int W>
HC_SIMD_INLINE Vf<W> Max(Vf<W> a, Vf<W> b) {
  return Select<W>(a > b, a, b);
}
template <int W>
HC_SIMD_INLINE float HorizontalMax(Vf<W> v) {
  float m = v[0];
  for (int i = 1; i < W; ++i) m = m > v[i] ? m : v[i];
  return m;
}
template <int W>
HC_SIMD_INLINE float HorizontalSum(Vf<W> v) {
  // Pairwise in a fixed order (the same for every call with this W).
  for (int half = W / 2; half >= 1; half /= 2) {
    for (int i = 0; i < half; ++i) v[i] += v[i + half];
  }
  return v[0];
}

// exp(x) for x <= 88, relative error ~2 ulp (Cephes' expf polynomial on
// x - k ln2, k = round(x / ln2)); exactly 1 at x = 0 and exactly 0 for
// x < -87.3 (including -inf), so masked scores give weight 0.
template <int W>
HC_SIMD_INLINE Vf<W> Exp(Vf<W> x) {
  const Vi<W> underflow = x < -87.3f;
  x = Select<W>(underflow, Splat<W>(0.0f), x);
  x = Select<W>(x > 88.0f, Splat<W>(88.0f), x);
  const Vf<W> k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  Vf<W> r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  Vf<W> p = Splat<W>(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const Vi<W> ki = __builtin_convertvector(k, Vi<W>);
  const Vf<W> scale = (Vf<W>)((ki + 127) << 23);
  return (Vf<W>)(~underflow & (Vi<W>)(p * scale));
}

// c[r, j] (+)= sum_{k < K} a[r, k] * b[k, j] for r < R, j < C * W: R rows of
// A (row stride lda), K rows of B (row stride ldb), C vectors of columns.
template <int W, int R, int C>
HC_SIMD_INLINE void MicroTile(int K, const float* a, int64_t lda, const float* b, int64_t ldb,
                              float* c, int64_t ldc, bool accumulate) {
  Vf<W> acc[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int j = 0; j < C; ++j) {
      acc[r][j] = accumulate ? Load<W>(c + r * ldc + j * W) : Splat<W>(0.0f);
    }
  }
  for (int k = 0; k < K; ++k) {
    Vf<W> bv[C];
#pragma GCC unroll 8
    for (int j = 0; j < C; ++j) bv[j] = Load<W>(b + k * ldb + j * W);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Vf<W> av = Splat<W>(a[r * lda + k]);
#pragma GCC unroll 8
      for (int j = 0; j < C; ++j) acc[r][j] = acc[r][j] + av * bv[j];
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int j = 0; j < C; ++j) Store<W>(c + r * ldc + j * W, acc[r][j]);
  }
}

template <int W, int R>
HC_SIMD_INLINE void RowBlock(int N, int K, const float* a, int64_t lda, const float* b, int64_t ldb,
                             float* c, int64_t ldc, bool accumulate) {
  // Columns: blocks of kC vectors (as many accumulators as the ISA's
  // registers hold with R rows), then single vectors, then scalars.
  constexpr int kC = W == 16 ? 4 : 2;
  int j = 0;
  for (; j + kC * W <= N; j += kC * W) {
    MicroTile<W, R, kC>(K, a, lda, b + j, ldb, c + j, ldc, accumulate);
  }
  for (; j + W <= N; j += W) MicroTile<W, R, 1>(K, a, lda, b + j, ldb, c + j, ldc, accumulate);
  for (; j < N; ++j) {
    for (int r = 0; r < R; ++r) {
      float acc = accumulate ? c[r * ldc + j] : 0.0f;
      for (int k = 0; k < K; ++k) acc = acc + a[r * lda + k] * b[k * ldb + j];
      c[r * ldc + j] = acc;
    }
  }
}

// C[M, N] (+)= A[M, K] B[K, N], all row-major with the given row strides.
template <int W>
HC_SIMD_INLINE void TileGemm(int M, int N, int K, const float* a, int64_t lda, const float* b,
                             int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  int r = 0;
  for (; r + 4 <= M; r += 4)
    RowBlock<W, 4>(N, K, a + r * lda, lda, b, ldb, c + r * ldc, ldc, accumulate);
  switch (M - r) {
    case 3:
      RowBlock<W, 3>(N, K, a + r * lda, lda, b, ldb, c + r * ldc, ldc, accumulate);
      break;
    case 2:
      RowBlock<W, 2>(N, K, a + r * lda, lda, b, ldb, c + r * ldc, ldc, accumulate);
      break;
    case 1:
      RowBlock<W, 1>(N, K, a + r * lda, lda, b, ldb, c + r * ldc, ldc, accumulate);
      break;
    default:
      break;
  }
}

}  // namespace hc::kernels::simd

#endif  // HC_KERNELS_CPU_SIMD_TILE_H_
