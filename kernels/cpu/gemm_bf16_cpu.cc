// CPU GEMM with bf16 weights (GemmKernel::GemmBf16): three paths, chosen at
// run time from CPUID (never at compile time only: the binary runs on CPUs of
// one kind that differ in their extensions).
//
// Every path rounds the activations to bf16 (the GemmBf16Args contract), so
// they agree up to fp32 summation order and a path may pick its kernel per m.
//
// - avx512bf16: vdpbf16ps. m <= 8 (decode): the activations are rounded to
//   bf16 (RNE) once per call into a zero-padded copy; all A rows meet 4
//   weight rows n / 4 apart (m <= 4: the weight read once as 4 long
//   sequential streams) or 3 adjacent rows prefetched into L2 ahead (m >= 5)
//   along K, with no packing; tails of K are masked loads of B against A's
//   zero padding. Larger m: the packed kernel of gemm_avx512_cpu.cc.
// - widen-avx2: fp32 FMA on widened weights. m <= 8 (decode): dot-product tiles of up
//   to 3 A rows x 4 B rows; each 16-element bf16 chunk of B is widened in
//   registers with a shift and a mask (no shuffles) against a copy of A
//   deinterleaved into even / odd elements; larger m: the packed fp32 path of
//   gemm_cpu.cc, widening B while it packs it.
// - scalar: portable C++ of the same two shapes (no intrinsics).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/gemm_internal.h"
#include "kernels/cpu/x86_simd.h"
#include "kernels/half.h"

namespace hc::kernels {
namespace {

constexpr int kSmallM = 8;  // m <= kSmallM: dot-product shapes (as in gemm_cpu.cc)

// The activation as every path multiplies it (the GemmBf16Args contract).
inline float RoundBf16(float x) { return Bf16ToF32(F32ToBf16(x)); }

void StoreDot(const GemmBf16Args& g, int i, int j, float v) {
  float* c = g.c + i * g.ldc + j;
  *c = g.accumulate ? *c + v : v;
}

void ScalarBf16(const GemmBf16Args& g) {
  if (g.m > kSmallM) return internal::PackedGemmBf16(g, /*avx2=*/false);
  for (int i = 0; i < g.m; ++i) {
    const float* a = g.a + i * g.lda;
    for (int j = 0; j < g.n; ++j) {
      const uint16_t* b = g.b + j * g.ldb;
      float s = 0.0f;
      for (int p = 0; p < g.k; ++p) s += RoundBf16(a[p]) * Bf16ToF32(b[p]);
      StoreDot(g, i, j, s);
    }
  }
}

#if defined(__x86_64__)
#define HC_AVX2 __attribute__((target("avx2,fma")))
#define HC_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

HC_AVX2 inline float Sum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Widening without shuffles: a 256-bit load of 16 bf16 is 8 32-bit words;
// word << 16 is the even element, word & 0xFFFF0000 the odd one. A is
// deinterleaved to match, once per call: per chunk of 16, [8 even | 8 odd].
constexpr int kChunk = 16;

// MA A rows (deinterleaved, row stride a_ld) x NB B rows; at most 3 x 4 = 12
// accumulators.
template <int MA, int NB>
HC_AVX2 void WidenTile(const GemmBf16Args& g, const float* ad, int64_t a_ld, int i0, int j0) {
  const int k16 = g.k & ~(kChunk - 1);
  const uint16_t* b[NB];
  for (int q = 0; q < NB; ++q) b[q] = g.b + (j0 + q) * g.ldb;
  __m256 acc[MA][NB];
  for (int r = 0; r < MA; ++r) {
    for (int q = 0; q < NB; ++q) acc[r][q] = _mm256_setzero_ps();
  }
  const __m256i high = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  for (int p = 0; p < k16; p += kChunk) {
    __m256 even[NB], odd[NB];
    for (int q = 0; q < NB; ++q) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[q] + p));
      even[q] = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
      odd[q] = _mm256_castsi256_ps(_mm256_and_si256(w, high));
    }
    for (int r = 0; r < MA; ++r) {
      const __m256 ae = _mm256_loadu_ps(ad + r * a_ld + p);
      const __m256 ao = _mm256_loadu_ps(ad + r * a_ld + p + 8);
      for (int q = 0; q < NB; ++q) {
        acc[r][q] = _mm256_fmadd_ps(ae, even[q], acc[r][q]);
        acc[r][q] = _mm256_fmadd_ps(ao, odd[q], acc[r][q]);
      }
    }
  }
  for (int r = 0; r < MA; ++r) {
    const float* a = g.a + (i0 + r) * g.lda;
    for (int q = 0; q < NB; ++q) {
      float v = Sum8(acc[r][q]);
      for (int p = k16; p < g.k; ++p) v += RoundBf16(a[p]) * Bf16ToF32(b[q][p]);
      StoreDot(g, i0 + r, j0 + q, v);
    }
  }
}

template <int NB>
HC_AVX2 void WidenRows(const GemmBf16Args& g, const float* ad, int64_t a_ld, int j) {
  int i = 0;
  for (; i + 3 <= g.m; i += 3) WidenTile<3, NB>(g, ad + i * a_ld, a_ld, i, j);
  if (g.m - i == 2) WidenTile<2, NB>(g, ad + i * a_ld, a_ld, i, j);
  if (g.m - i == 1) WidenTile<1, NB>(g, ad + i * a_ld, a_ld, i, j);
}

HC_AVX2 void WidenAvx2(const GemmBf16Args& g) {
  if (g.m > kSmallM) return internal::PackedGemmBf16(g, /*avx2=*/true);
  const int64_t a_ld = g.k & ~(kChunk - 1);
  thread_local std::vector<float> ad;  // per thread: tensor-parallel ranks call concurrently
  ad.resize(static_cast<size_t>(g.m) * a_ld + 1);
  for (int i = 0; i < g.m; ++i) {
    const float* a = g.a + i * g.lda;
    float* d = ad.data() + i * a_ld;
    for (int64_t p = 0; p < a_ld; p += kChunk) {
      for (int e = 0; e < kChunk / 2; ++e) {
        d[p + e] = RoundBf16(a[p + 2 * e]);
        d[p + kChunk / 2 + e] = RoundBf16(a[p + 2 * e + 1]);
      }
    }
  }
  int j = 0;
  for (; j + 4 <= g.n; j += 4) WidenRows<4>(g, ad.data(), a_ld, j);
  for (; j < g.n; ++j) WidenRows<1>(g, ad.data(), a_ld, j);
}

HC_AVX512BF16 inline float Sum16(__m512 v) { return _mm512_reduce_add_ps(v); }

// Decode (m <= 8): all m A rows against NB weight rows at a time, so each
// weight byte is loaded once per call with no packing. At m <= 4 (kSpreadMaxM)
// the NB rows of a tile are spread over N (rows i, i + n / NB, ...): the
// weight is read as NB long sequential streams side by side, which the
// hardware prefetcher follows best.
// Measured with kernels_bench (docs/kernels.md; GB/s, shared machine, several
// runs each; single-core read: 19 GB/s as one stream, 26.5 as 8):
//  - m = 1, K = 768: 4 spread rows 23-27; one row at a time (one stream)
//    15-25; 8 adjacent rows (8 interleaved streams of 1.5 KB each) 10-12. At
//    K = 2048-8192 4 spread rows 22-23, 8 adjacent 20-22, one row 15-17.
//    Software prefetching (1-16 KB ahead) only lost against the hardware
//    prefetcher at m = 1.
//  - m >= 5 (m = 8 measured): 3 adjacent weight rows per tile, each row
//    prefetched into L2 24 rows ahead (kAheadRows; the spread m = 3-4 tiles
//    prefetch so too), as the fp32 decode tiles do: 11.8-15.5 GB/s at K =
//    768-2048, against 9.7-14.1 for 2 spread rows with a non-temporal prefetch
//    2 KB ahead (same run, alternating builds); 12 or 48 rows ahead measured
//    the same, an L1 prefetch 8.8-12.6, 2 adjacent rows 10.0-15.1. K >= 1536
//    stays lowest: the 8 rows of A (3 KB each) no longer share L1 with the
//    weight stream comfortably.
// Each (A row, weight row) has one accumulator over K's 32-element chunks in
// order, so an element's value depends on K alone whatever tile holds it (the
// column-split contract).
constexpr int64_t kAheadRows = 24;  // m >= 3: L2 prefetch distance, in weight rows
// m <= kSpreadMaxM: 4 spread rows per tile (m = 3-4 with the L2 prefetch
// 24 rows ahead in each stream). m = 3-4 moved here from the adjacent tiles:
// one nemotron-moe-small step's 96 expert weights rotated through memory,
// alternating builds, bf16 GB/s: 384 x 768 m = 3 17.4-19.2 -> 20.7-23.7,
// m = 4 16.7-16.9 -> 18.5-20.2; 768 x 384 m = 3-4 13.1-14.8 -> 20.2-23.0;
// 3072 x 768 within the noise (22-32 either way). Without the prefetch the
// spread m = 3-4 tiles read 15-21. m = 5-6 spread won on the expert shapes
// (13 -> 18-21) but lost at 3072 x 768, m = 6 (23 -> 21); the fp32 tiles
// measured no gain from spreading m = 3-4 (3072 x 768: 25-26 -> 21 GB/s).
constexpr int kSpreadMaxM = 4;

// Rows j0, j0 + step_rows, ..., j0 + (NB - 1) * step_rows of B.
template <int MA, int NB>
HC_AVX512BF16 void StreamTile(const GemmBf16Args& g, const uint16_t* a16, int64_t a_ld, int j0,
                              int step_rows) {
  const int k32 = g.k & ~31;
  const uint16_t* b[NB];
  for (int q = 0; q < NB; ++q) b[q] = g.b + int64_t{j0 + q * step_rows} * g.ldb;
  __m512 acc[MA][NB];
  for (int r = 0; r < MA; ++r) {
    for (int q = 0; q < NB; ++q) acc[r][q] = _mm512_setzero_ps();
  }
  auto step = [&](int p, const __m512i(&bv)[NB]) HC_AVX512BF16 {
#pragma GCC unroll 8
    for (int r = 0; r < MA; ++r) {
      const __m512bh av = (__m512bh)_mm512_loadu_si512(a16 + r * a_ld + p);
#pragma GCC unroll 8
      for (int q = 0; q < NB; ++q) acc[r][q] = _mm512_dpbf16_ps(acc[r][q], av, (__m512bh)bv[q]);
    }
  };
  for (int p = 0; p < k32; p += 32) {
    __m512i bv[NB];
#pragma GCC unroll 8
    for (int q = 0; q < NB; ++q) {
      if constexpr (MA >= 3) {  // a hint: never faults, even past the weight's end
        _mm_prefetch(reinterpret_cast<const char*>(b[q] + kAheadRows * g.ldb + p), _MM_HINT_T1);
      }
      bv[q] = _mm512_loadu_si512(b[q] + p);
    }
    step(p, bv);
  }
  if (k32 < g.k) {  // A is zero beyond k; B is masked so no byte past its row is read
    const __mmask32 mask = static_cast<__mmask32>((uint64_t{1} << (g.k - k32)) - 1);
    __m512i bv[NB];
#pragma GCC unroll 8
    for (int q = 0; q < NB; ++q) bv[q] = _mm512_maskz_loadu_epi16(mask, b[q] + k32);
    step(k32, bv);
  }
  for (int r = 0; r < MA; ++r) {
    for (int q = 0; q < NB; ++q) StoreDot(g, r, j0 + q * step_rows, Sum16(acc[r][q]));
  }
}

// Every column: m <= 4 in tiles of 4 rows spread n / 4 apart, m >= 5 in tiles
// of adjacent rows; then the remaining rows one at a time.
template <int MA>
HC_AVX512BF16 void StreamRows(const GemmBf16Args& g, const uint16_t* a16, int64_t a_ld) {
  if constexpr (MA <= kSpreadMaxM) {
    const int section = g.n / 4;
    for (int i = 0; i < section; ++i) StreamTile<MA, 4>(g, a16, a_ld, i, section);
    for (int j = section * 4; j < g.n; ++j) StreamTile<MA, 1>(g, a16, a_ld, j, 1);
  } else {
    constexpr int kAdj = 3;  // MA x kAdj accumulators: at most 24
    int j = 0;
    for (; j + kAdj <= g.n; j += kAdj) StreamTile<MA, kAdj>(g, a16, a_ld, j, 1);
    for (; j < g.n; ++j) StreamTile<MA, 1>(g, a16, a_ld, j, 1);
  }
}

// F32ToBf16 (kernels/half.h) of 16 values, bit for bit: round to nearest
// even, NaN kept quiet. Not vcvtneps2bf16, which flushes denormal inputs to
// zero. The scalar per-element conversion this replaces was ~4% of a batch-8
// decode step's GEMM time, and most of a call at small N.
HC_AVX512BF16 inline __m256i RoundToBf16(const float* src) {
  const __m512i bits = _mm512_loadu_si512(src);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(
      _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(
      _mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
  const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, quiet));
}

HC_AVX512BF16 void DpBf16(const GemmBf16Args& g) {
  if (g.m > kSmallM) return internal::Avx512PackedGemmBf16(g);
  // Rows a whole number of 64-byte lines plus one: with a stride of a multiple
  // of 4 KB (k = 2048) all 8 rows' lines at one k map to the same L1 set.
  const int64_t a_ld = ((g.k + 31) & ~31) + 32;
  thread_local std::vector<uint16_t> a16;  // per thread: tensor-parallel ranks call concurrently
  a16.resize(static_cast<size_t>(g.m) * a_ld);
  for (int r = 0; r < g.m; ++r) {
    const float* src = g.a + r * g.lda;
    uint16_t* dst = a16.data() + r * a_ld;
    int p = 0;
    for (; p + 16 <= g.k; p += 16) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + p), RoundToBf16(src + p));
    }
    for (; p < g.k; ++p) dst[p] = F32ToBf16(src[p]);
    std::fill(dst + g.k, dst + a_ld, uint16_t{0});
  }
  switch (g.m) {
    case 1:
      return StreamRows<1>(g, a16.data(), a_ld);
    case 2:
      return StreamRows<2>(g, a16.data(), a_ld);
    case 3:
      return StreamRows<3>(g, a16.data(), a_ld);
    case 4:
      return StreamRows<4>(g, a16.data(), a_ld);
    case 5:
      return StreamRows<5>(g, a16.data(), a_ld);
    case 6:
      return StreamRows<6>(g, a16.data(), a_ld);
    case 7:
      return StreamRows<7>(g, a16.data(), a_ld);
    default:
      return StreamRows<8>(g, a16.data(), a_ld);
  }
}
#endif  // __x86_64__

}  // namespace

bool CpuHasAvx512Bf16() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

namespace {

// kAuto (measured, docs/kernels.md): the vdpbf16ps path wherever the CPU has
// it, for decode and prefill m alike.
CpuBf16GemmImpl Resolve(CpuBf16GemmImpl impl) {
  if (impl != CpuBf16GemmImpl::kAuto) return impl;
  if (CpuHasAvx512Bf16()) return CpuBf16GemmImpl::kAvx512Bf16;
  if (CpuHasAvx2Fma()) return CpuBf16GemmImpl::kWidenAvx2;
  return CpuBf16GemmImpl::kScalar;
}

}  // namespace

const char* CpuBf16GemmName(CpuBf16GemmImpl impl) {
  switch (Resolve(impl)) {
    case CpuBf16GemmImpl::kAvx512Bf16:
      return "avx512bf16";
    case CpuBf16GemmImpl::kWidenAvx2:
      return "widen-avx2";
    default:
      return "scalar";
  }
}

namespace internal {

absl::StatusOr<Bf16GemmFn> SelectBf16Gemm(CpuBf16GemmImpl impl) {
  switch (Resolve(impl)) {
    case CpuBf16GemmImpl::kAvx512Bf16:
#if defined(__x86_64__)
      if (CpuHasAvx512Bf16()) return &DpBf16;
#endif
      return absl::UnavailableError(
          "the avx512bf16 GEMM path needs a CPU with avx512f, avx512bw and avx512_bf16");
    case CpuBf16GemmImpl::kWidenAvx2:
#if defined(__x86_64__)
      if (CpuHasAvx2Fma()) return &WidenAvx2;
#endif
      return absl::UnavailableError("the widen-avx2 GEMM path needs a CPU with avx2 and fma");
    default:
      return &ScalarBf16;
  }
}

}  // namespace internal
}  // namespace hc::kernels
