// AVX-512 prefill GEMMs (m > 8): fp32 FMA and bf16 vdpbf16ps, one structure.
//
// The weight B ([N, K], the HF Linear layout) is never packed: the micro-kernel
// broadcasts B[n][p] (fp32) or the bf16 pair B[n][p, p+1] (one 32-bit
// broadcast: consecutive k of one weight row are adjacent in memory) straight
// from the weight rows, against the activations packed once per call as
// transposed panels of 16 rows (one zmm of 16 m lanes per k, or per k pair of
// bf16 interleaved as vdpbf16ps wants them). The tile is MV zmm of m (16 rows
// each) x NB weight rows, accumulated over the whole K, then transposed into
// C. Packing A costs M x K per call against M x N x K multiply-adds, so
// nothing is repacked per weight (no per-call weight packing, no prepacking).
//
// Contract kept for callers that split N across threads (column blocks of B
// and C): every C element is the sequential sum over k = 0..K-1 in one fp32
// lane (bf16: pairs of k, as vdpbf16ps adds them), so its value depends only
// on K, never on N, on n0 / n1, or on where the element sits in its tile.

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "kernels/cpu/gemm_internal.h"
#include "kernels/cpu/x86_simd.h"
#include "kernels/half.h"

namespace hc::kernels::internal {

#if defined(__x86_64__)
namespace {

#define HC_AVX512 __attribute__((target("avx512f")))
#define HC_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

constexpr int kLanes = 16;  // fp32 lanes of a zmm: m rows per packed panel
constexpr int kMaxMv = 2;   // zmm of m per tile (32 rows)
constexpr int kMaxNb = 12;  // weight rows per tile: 24 accumulators + 2 A + 1 broadcast
// Rows of A packed at a time: the packed block (kMc x K) stays in L2 while
// every weight row block passes over it.
constexpr int kMc = 128;
// k per block (even, so bf16 pairs never straddle blocks): a weight row block
// (kMaxNb x kKc) stays in L1. Each block's sum is added to C, so an element's
// summation order depends on K alone.
constexpr int kKc = 512;

// C[m0.., n0..] (+)= tile, where tile is [NB][MV * 16] (transposed C), only the
// first mr rows and nb columns valid.
inline void StoreTransposed(const float* tile, int tile_ld, int mr, int nb, float* c, int64_t ldc,
                            bool add) {
  for (int i = 0; i < mr; ++i) {
    float* crow = c + i * ldc;
    if (add) {
      for (int j = 0; j < nb; ++j) crow[j] += tile[j * tile_ld + i];
    } else {
      for (int j = 0; j < nb; ++j) crow[j] = tile[j * tile_ld + i];
    }
  }
}

template <int MV, int NB>
HC_AVX512 inline void ZeroAcc(__m512 (&acc)[MV][NB]) {
#pragma GCC unroll 32
  for (int v = 0; v < MV; ++v) {
#pragma GCC unroll 32
    for (int j = 0; j < NB; ++j) acc[v][j] = _mm512_setzero_ps();
  }
}

// tile[j][v * 16 + l] = acc[v][j] lane l: the tile as StoreTransposed reads it.
template <int MV, int NB>
HC_AVX512 inline void StoreAcc(const __m512 (&acc)[MV][NB], float* tile) {
#pragma GCC unroll 32
  for (int j = 0; j < NB; ++j) {
#pragma GCC unroll 32
    for (int v = 0; v < MV; ++v)
      _mm512_storeu_ps(tile + j * kMaxMv * kLanes + v * kLanes, acc[v][j]);
  }
}

// ---- fp32 -------------------------------------------------------------------

// Packs rows [0, rows) of A into panels of 16 rows: panel q holds [k][16]
// (row 16 q + l in lane l), zero padded past `rows`.
void PackAF32(const float* a, int64_t lda, int rows, int k, float* dst) {
  for (int r0 = 0; r0 < rows; r0 += kLanes) {
    float* panel = dst + static_cast<int64_t>(r0) * k;  // PanelStride<float>(k) per panel
    const int w = std::min(kLanes, rows - r0);
    for (int l = 0; l < w; ++l) {
      const float* s = a + (r0 + l) * lda;
      for (int p = 0; p < k; ++p) panel[p * kLanes + l] = s[p];
    }
    for (int l = w; l < kLanes; ++l) {
      for (int p = 0; p < k; ++p) panel[p * kLanes + l] = 0.0f;
    }
  }
}

template <int MV, int NB>
HC_AVX512 void TileF32(int k, const float* ap, int64_t panel_stride, const float* b, int64_t ldb,
                       float* tile) {
  __m512 acc[MV][NB];
  ZeroAcc(acc);
  const float* brow[NB];
#pragma GCC unroll 32
  for (int j = 0; j < NB; ++j) brow[j] = b + j * ldb;
  for (int p = 0; p < k; ++p) {
    __m512 av[MV];
#pragma GCC unroll 32
    for (int v = 0; v < MV; ++v) av[v] = _mm512_load_ps(ap + v * panel_stride + p * kLanes);
#pragma GCC unroll 32
    for (int j = 0; j < NB; ++j) {
      const __m512 bj = _mm512_set1_ps(brow[j][p]);
#pragma GCC unroll 32
      for (int v = 0; v < MV; ++v) acc[v][j] = _mm512_fmadd_ps(av[v], bj, acc[v][j]);
    }
  }
  StoreAcc(acc, tile);
}

// ---- bf16 -------------------------------------------------------------------

// Packs rows [0, rows) of A, rounded to bf16, into panels of 16 rows: panel q
// holds [ceil(k / 2)][16][2] (lane l = row 16 q + l, its k pair), zero padded
// past `rows` and past k.
void PackABf16(const float* a, int64_t lda, int rows, int k, uint16_t* dst) {
  const int pairs = (k + 1) / 2;
  for (int r0 = 0; r0 < rows; r0 += kLanes) {
    uint16_t* panel = dst + static_cast<int64_t>(r0) * pairs * 2;  // PanelStride<uint16_t>(k)
    const int w = std::min(kLanes, rows - r0);
    for (int l = 0; l < w; ++l) {
      const float* s = a + (r0 + l) * lda;
      for (int q = 0; q < k / 2; ++q) {
        panel[(q * kLanes + l) * 2] = F32ToBf16(s[2 * q]);
        panel[(q * kLanes + l) * 2 + 1] = F32ToBf16(s[2 * q + 1]);
      }
      if (k % 2 != 0) {
        panel[((pairs - 1) * kLanes + l) * 2] = F32ToBf16(s[k - 1]);
        panel[((pairs - 1) * kLanes + l) * 2 + 1] = 0;
      }
    }
    for (int l = w; l < kLanes; ++l) {
      for (int q = 0; q < pairs; ++q) {
        panel[(q * kLanes + l) * 2] = 0;
        panel[(q * kLanes + l) * 2 + 1] = 0;
      }
    }
  }
}

template <int MV, int NB>
HC_AVX512BF16 void TileBf16(int k, const uint16_t* ap, int64_t panel_stride, const uint16_t* b,
                            int64_t ldb, float* tile) {
  __m512 acc[MV][NB];
  ZeroAcc(acc);
  const uint16_t* brow[NB];
#pragma GCC unroll 32
  for (int j = 0; j < NB; ++j) brow[j] = b + j * ldb;
  const int full = k / 2;
  for (int q = 0; q < full; ++q) {
    __m512i av[MV];
#pragma GCC unroll 32
    for (int v = 0; v < MV; ++v) {
      av[v] = _mm512_load_si512(ap + v * panel_stride + q * kLanes * 2);
    }
#pragma GCC unroll 32
    for (int j = 0; j < NB; ++j) {
      uint32_t pair;
      std::memcpy(&pair, brow[j] + 2 * q, sizeof pair);
      const __m512i bj = _mm512_set1_epi32(static_cast<int>(pair));
#pragma GCC unroll 32
      for (int v = 0; v < MV; ++v) {
        acc[v][j] = _mm512_dpbf16_ps(acc[v][j], (__m512bh)av[v], (__m512bh)bj);
      }
    }
  }
  if (k % 2 != 0) {  // last k alone: its pair partner is zero in A and never read from B
    __m512i av[MV];
#pragma GCC unroll 32
    for (int v = 0; v < MV; ++v) {
      av[v] = _mm512_load_si512(ap + v * panel_stride + full * kLanes * 2);
    }
#pragma GCC unroll 32
    for (int j = 0; j < NB; ++j) {
      const __m512i bj = _mm512_set1_epi32(static_cast<int>(brow[j][k - 1]));
#pragma GCC unroll 32
      for (int v = 0; v < MV; ++v) {
        acc[v][j] = _mm512_dpbf16_ps(acc[v][j], (__m512bh)av[v], (__m512bh)bj);
      }
    }
  }
  StoreAcc(acc, tile);
}

// ---- fp32, small m (decode) -----------------------------------------------------

// Dot products: all MA A rows x NB weight rows, both read along K 16 at a time
// (masked tail), each accumulator reduced once at the end. Every A row of the
// call shares one pass over the weight, which streams from DRAM once per call.
// m <= 2: the NB rows of a tile are spread n / NB apart, so the weight is read
// as NB long sequential streams, which the hardware prefetcher follows (as the
// bf16 decode tiles do); m > 2: NB adjacent rows, prefetched into L2
// kPrefetchTiles tiles ahead. The loop is written out (no lambda over
// the accumulators): GCC stored every accumulator to the stack on each step of
// the lambda version, which halved the m = 8 throughput.
// Per element the arithmetic is fixed: lane-wise fmadd over k in order, then
// _mm512_reduce_add_ps; it does not depend on MA, NB, i0 or j0, so a row's
// result is the same at any m <= 8 and any column split.
constexpr int kPrefetchTiles = 8;

// Returns v, kept in a register: without this GCC folds the A load into each
// of the NB FMAs as a memory operand, and NB times the loads leave the load
// ports, not the FMA unit, as the bound.
HC_AVX512 inline __m512 InRegister(__m512 v) {
  asm("" : "+v"(v));
  return v;
}

// Weight rows j0, j0 + step_rows, ..., j0 + (NB - 1) * step_rows; prefetches
// kAheadRows rows further on into L2 (0: none; a hint, which never faults,
// even past the weight's end).
template <int MA, int NB, int kAheadRows>
HC_AVX512 void DotTileF32(const GemmArgs& g, int i0, int j0, int step_rows) {
  const int k16 = g.k & ~(kLanes - 1);
  const float* a[MA];
#pragma GCC unroll 8
  for (int r = 0; r < MA; ++r) a[r] = g.a + (i0 + r) * g.lda;
  const float* b[NB];
#pragma GCC unroll 8
  for (int q = 0; q < NB; ++q) b[q] = g.b + int64_t{j0 + q * step_rows} * g.ldb;
  __m512 acc[MA][NB];
  ZeroAcc(acc);
  // Prefetch into L2 kPrefetchTiles tiles ahead. One tile ahead into L1 (the
  // first version) left m = 8 at ~10 GB/s of weights, compute and DRAM in
  // turn: the 8 A rows (24-48 KiB) evict L1, and one tile is too short to
  // cover the DRAM latency at this FMA rate. 8 tiles into L2: ~15-17 GB/s.
  const int64_t ahead = int64_t{kAheadRows} * g.ldb;
  for (int p = 0; p < k16; p += kLanes) {
    __m512 bv[NB];
#pragma GCC unroll 8
    for (int q = 0; q < NB; ++q) {
      if constexpr (kAheadRows > 0) {
        _mm_prefetch(reinterpret_cast<const char*>(b[q] + ahead + p), _MM_HINT_T1);
      }
      bv[q] = _mm512_loadu_ps(b[q] + p);
    }
#pragma GCC unroll 8
    for (int r = 0; r < MA; ++r) {
      const __m512 av = InRegister(_mm512_loadu_ps(a[r] + p));
#pragma GCC unroll 8
      for (int q = 0; q < NB; ++q) acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);
    }
  }
  if (k16 < g.k) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (g.k - k16)) - 1);
    __m512 bv[NB];
#pragma GCC unroll 8
    for (int q = 0; q < NB; ++q) bv[q] = _mm512_maskz_loadu_ps(mask, b[q] + k16);
#pragma GCC unroll 8
    for (int r = 0; r < MA; ++r) {
      const __m512 av = _mm512_maskz_loadu_ps(mask, a[r] + k16);
#pragma GCC unroll 8
      for (int q = 0; q < NB; ++q) acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);
    }
  }
  for (int r = 0; r < MA; ++r) {
    float* crow = g.c + (i0 + r) * g.ldc + j0;
    for (int q = 0; q < NB; ++q) {
      const float v = _mm512_reduce_add_ps(acc[r][q]);
      float* cq = crow + q * step_rows;
      *cq = g.accumulate ? *cq + v : v;
    }
  }
}

// Adjacent weight rows per tile for MA (> 2) A rows: MA x NB accumulators +
// NB weight vectors + 1 A vector within the 32 zmm registers.
template <int MA>
constexpr int kDotNb = MA == 3   ? 6
                       : MA == 4 ? 5
                       : MA <= 6 ? 4
                                 : 3;

// Spread weight rows per tile at m <= 2. kernels_bench weight GB/s
// (docs/kernels.md; single-core read 20 GB/s one stream, 27 as 8): m = 1,
// 8 adjacent rows 19-24, one row at a time 16-24, 2 / 3 / 4 / 8 spread rows
// 21-27 / 24-29 / 23-28 / 23-27; m = 2, 8 adjacent 16-26, 4 spread 22-27
// (K = 768: 17 -> 26; K = 8192: 25 -> 22). At m = 8 spread rows (2-4, with
// and without prefetch into L2 or L1-bypassing hints) and K blocks with the
// accumulators parked in memory measured no faster than adjacent rows.
constexpr int kSpreadNb = 4;

// C = A B^T for exactly MA (= m) rows: one pass over the weight.
template <int MA>
HC_AVX512 void DotRowsF32(const GemmArgs& g) {
  if constexpr (MA <= 2) {
    const int section = g.n / kSpreadNb;
    for (int i = 0; i < section; ++i) DotTileF32<MA, kSpreadNb, 0>(g, 0, i, section);
    for (int j = section * kSpreadNb; j < g.n; ++j) DotTileF32<MA, 1, 0>(g, 0, j, 1);
  } else {
    constexpr int kNb = kDotNb<MA>;
    int j = 0;
    for (; j + kNb <= g.n; j += kNb) DotTileF32<MA, kNb, kPrefetchTiles * kNb>(g, 0, j, 1);
    for (; j < g.n; ++j) DotTileF32<MA, 1, 0>(g, 0, j, 1);
  }
}

// ---- driver -------------------------------------------------------------------

// Tile<MV, NB> for every MV <= kMaxMv and NB <= kMaxNb, indexed [MV - 1][NB - 1].
template <typename T>
using TileFn = void (*)(int, const T*, int64_t, const T*, int64_t, float*);

template <template <int, int> class Maker, int MV, int... NBs>
constexpr auto RowOfTiles(std::integer_sequence<int, NBs...>) {
  using Fn = decltype(Maker<1, 1>::fn);
  return std::array<Fn, sizeof...(NBs)>{Maker<MV, NBs + 1>::fn...};
}

template <int MV, int NB>
struct F32Maker {
  static constexpr TileFn<float> fn = &TileF32<MV, NB>;
};
template <int MV, int NB>
struct Bf16Maker {
  static constexpr TileFn<uint16_t> fn = &TileBf16<MV, NB>;
};

template <template <int, int> class Maker>
constexpr auto TileTable() {
  constexpr auto nbs = std::make_integer_sequence<int, kMaxNb>{};
  return std::array{RowOfTiles<Maker, 1>(nbs), RowOfTiles<Maker, 2>(nbs)};
}
static_assert(kMaxMv == 2, "TileTable lists one row per MV");

// Runs the tiles over C for a packed A of `rows` rows (starting at C row i0)
// and every weight row block over kc k. `ap` panels are `panel_stride` elements apart.
template <typename T, typename Table>
void RunTiles(const Table& table, int rows, int n, int k, const T* ap, int64_t panel_stride,
              const T* b, int64_t ldb, float* c, int64_t ldc, bool add) {
  alignas(64) float tile[kMaxNb * kMaxMv * kLanes];
  for (int j0 = 0; j0 < n; j0 += kMaxNb) {
    const int nb = std::min(kMaxNb, n - j0);
    for (int r0 = 0; r0 < rows; r0 += kMaxMv * kLanes) {
      const int mr = std::min(kMaxMv * kLanes, rows - r0);
      const int mv = (mr + kLanes - 1) / kLanes;
      table[mv - 1][nb - 1](k, ap + (r0 / kLanes) * panel_stride, panel_stride, b + j0 * ldb, ldb,
                            tile);
      StoreTransposed(tile, kMaxMv * kLanes, mr, nb, c + r0 * ldc + j0, ldc, add);
    }
  }
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// Per-thread packed-A buffer (tensor-parallel ranks and column-block threads
// call concurrently), grown to the largest block seen.
void* ThreadBuffer(size_t bytes) {
  thread_local std::unique_ptr<void, FreeDeleter> buf;
  thread_local size_t size = 0;
  if (bytes > size) {
    size = (bytes + 4095) & ~size_t{4095};
    buf.reset(std::aligned_alloc(64, size));
  }
  return buf.get();
}

// Elements between consecutive packed panels of 16 rows over k.
template <typename T>
int64_t PanelStride(int k) {
  return sizeof(T) == 4 ? int64_t{k} * kLanes : int64_t{(k + 1) / 2} * 2 * kLanes;
}

// The driver both element types share: A packed per block of kMc rows x kKc
// k, every weight row block of kMaxNb rows passing over it.
template <typename T, typename Table, typename Pack>
void PackedGemm(const Table& table, Pack pack, int m, int n, int k, const float* a, int64_t lda,
                const T* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  const int kc_max = std::min(kKc, k);
  const int64_t panel_max = PanelStride<T>(kc_max);
  const int panels_max = (std::min(kMc, m) + kLanes - 1) / kLanes;
  T* ap = static_cast<T*>(ThreadBuffer(sizeof(T) * panel_max * panels_max));
  for (int i0 = 0; i0 < m; i0 += kMc) {
    const int rows = std::min(kMc, m - i0);
    for (int p0 = 0; p0 < k; p0 += kKc) {
      const int kc = std::min(kKc, k - p0);
      const int64_t panel_stride = PanelStride<T>(kc);
      pack(a + i0 * lda + p0, lda, rows, kc, ap);
      RunTiles<T>(table, rows, n, kc, ap, panel_stride, b + p0, ldb, c + i0 * ldc, ldc,
                  accumulate || p0 > 0);
    }
  }
}

}  // namespace

bool CpuHasAvx512F() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

void Avx512SmallMGemmF32(const GemmArgs& g) {
  switch (g.m) {
    case 1:
      return DotRowsF32<1>(g);
    case 2:
      return DotRowsF32<2>(g);
    case 3:
      return DotRowsF32<3>(g);
    case 4:
      return DotRowsF32<4>(g);
    case 5:
      return DotRowsF32<5>(g);
    case 6:
      return DotRowsF32<6>(g);
    case 7:
      return DotRowsF32<7>(g);
    default:  // 8 (the caller's kSmallM); larger m in blocks of 8 rows
      for (int i = 0; i < g.m; i += 8) {
        GemmArgs rows = g;
        rows.a = g.a + i * g.lda;
        rows.c = g.c + i * g.ldc;
        rows.m = std::min(8, g.m - i);
        if (rows.m == 8) {
          DotRowsF32<8>(rows);
        } else {
          Avx512SmallMGemmF32(rows);
        }
      }
      return;
  }
}

void Avx512PackedGemmF32(const GemmArgs& g) {
  static constexpr auto kTable = TileTable<F32Maker>();
  PackedGemm<float>(kTable, PackAF32, g.m, g.n, g.k, g.a, g.lda, g.b, g.ldb, g.c, g.ldc,
                    g.accumulate);
}

void Avx512PackedGemmBf16(const GemmBf16Args& g) {
  static constexpr auto kTable = TileTable<Bf16Maker>();
  PackedGemm<uint16_t>(kTable, PackABf16, g.m, g.n, g.k, g.a, g.lda, g.b, g.ldb, g.c, g.ldc,
                       g.accumulate);
}

#else  // !__x86_64__

void Avx512SmallMGemmF32(const GemmArgs&) {}
bool CpuHasAvx512F() { return false; }
void Avx512PackedGemmF32(const GemmArgs&) {}
void Avx512PackedGemmBf16(const GemmBf16Args&) {}

#endif

}  // namespace hc::kernels::internal
