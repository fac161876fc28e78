// CPU Mamba2 SSD: chunked scan and single-step update (see kernels/mamba2.h).
//
// Chunked form for a chunk of L tokens starting from state S0 of head h:
//   cs[l] = sum_{s <= l} dt[s] * A                       (inclusive cumsum)
//   y[l]  = exp(cs[l]) * (S0 C[l])                        (state from before the chunk)
//         + sum_{s <= l} exp(cs[l] - cs[s]) (C[l].B[s]) dt[s] x[s]   (inside the chunk)
//         + D x[l]
//   S_end = exp(cs[L-1]) S0 + sum_s exp(cs[L-1] - cs[s]) dt[s] x[s] (outer) B[s]
// which is the per-token recurrence unrolled over the chunk (ssd_minimal.py).
// Differences cs[l] - cs[s] are taken before exp so no factor overflows.
//
// Work split: first CB = C B^T of every (sequence, chunk, group), in parallel
// (only its lower triangle, in row blocks); then every (sequence, head) runs
// its chunks in order, in parallel (chunk-major rounds): the masked decay matrix
// M = CB * exp(segsum) * dt (simd::Exp), and three small matrix products on
// simd::TileGemm: y = C S0^T, y += M X, S = exp(cs_end) S0 + (X^T diag(w)) B.
// Every output element is computed by one task in a fixed order, so the
// result does not depend on the threads (hc::ParallelFor's contract).
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "common/intra_op.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/cpu_kernels_simd.h"
#include "kernels/cpu/simd_tile.h"

namespace hc::kernels {
namespace {

using simd::Vf;

// Rows per block of the causal products: a row block needs the columns (and
// the k range) up to its last row only.
constexpr int kRowBlock = 16;

inline float Softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

inline float Dt(const SsmParams& p, float raw, int h) {
  return std::clamp(Softplus(raw + p.dt_bias[h]), p.dt_min, p.dt_max);
}

inline int RoundUp(int x, int m) { return (x + m - 1) / m * m; }

// One chunk of one sequence.
struct Chunk {
  int t0;
  int len;
  int64_t cb_offset;  // of group 0's CB in the call's CB buffer; group g at + g * cb_stride
};

struct Call {
  const SsmParams* p;
  const SsmTensors* io;
  const std::vector<std::vector<Chunk>>* chunks;  // [seq]
  const int32_t* slots;
  float* cb;          // all CB matrices, [len, lp] each (lp = len rounded up to W)
  int64_t cb_stride;  // floats per group's CB: L * Lp
};

// CB[l, j] = C[l] . B[j] for j <= l (the rest of each kRowBlock-row block is
// computed too, never read past the block's last row).
template <int W>
HC_SIMD_INLINE void ChunkCb(const Call& call, const Chunk& ch, int g, std::vector<float>& bt) {
  const SsmParams& p = *call.p;
  const int N = p.state_size, len = ch.len, lp = RoundUp(len, W);
  bt.assign(static_cast<size_t>(N) * lp, 0.0f);
  for (int j = 0; j < len; ++j) {
    const float* bj = call.io->b.row(ch.t0 + j) + g * N;
    for (int n = 0; n < N; ++n) bt[static_cast<size_t>(n) * lp + j] = bj[n];
  }
  float* cb = call.cb + ch.cb_offset + g * call.cb_stride;
  for (int r0 = 0; r0 < len; r0 += kRowBlock) {
    const int rows = std::min(kRowBlock, len - r0);
    const int cols = std::min(lp, RoundUp(r0 + rows, W));
    simd::TileGemm<W>(rows, cols, N, call.io->c.row(ch.t0 + r0) + g * N, call.io->c.stride,
                      bt.data(), lp, cb + static_cast<size_t>(r0) * lp, lp, false);
  }
}

struct HeadScratch {
  std::vector<float> st_t, m, xt, dt, cs;
};

// Chunk `ch` of sequence `seq` for head h, from the head's [P, N] state in the
// sequence's slot (left there updated).
template <int W>
HC_SIMD_INLINE void ScanChunkHead(const Call& call, int seq, const Chunk& ch, int h,
                                  HeadScratch& sc) {
  const SsmParams& p = *call.p;
  const SsmTensors& io = *call.io;
  const int P = p.head_dim, N = p.state_size, L = p.chunk_size;
  const int g = h / (p.num_heads / p.num_groups);
  const int lp_max = RoundUp(L, W);
  float* st = p.state + static_cast<int64_t>(call.slots[seq]) * p.num_heads * P * N +
              static_cast<int64_t>(h) * P * N;
  const float a = -std::exp(p.a_log[h]);
  sc.st_t.resize(static_cast<size_t>(N) * P);
  sc.m.resize(static_cast<size_t>(L) * lp_max);
  sc.xt.resize(static_cast<size_t>(P) * L);
  sc.dt.resize(lp_max);
  sc.cs.resize(lp_max);
  const int len = ch.len, lp = RoundUp(len, W), t0 = ch.t0;
  float run = 0.0f;
  for (int l = 0; l < len; ++l) {
    sc.dt[l] = Dt(p, io.dt.row(t0 + l)[h], h);
    run += sc.dt[l] * a;
    sc.cs[l] = run;
  }
  // Padding columns: finite, and masked to 0 below.
  for (int l = len; l < lp; ++l) {
    sc.dt[l] = 0.0f;
    sc.cs[l] = run;
  }
  // y = C S0^T, then y = exp(cs) y + D x.
  for (int q = 0; q < P; ++q) {
    for (int n = 0; n < N; ++n) sc.st_t[static_cast<size_t>(n) * P + q] = st[q * N + n];
  }
  float* y0 = io.y.row(t0) + h * P;
  simd::TileGemm<W>(len, P, N, io.c.row(t0) + g * N, io.c.stride, sc.st_t.data(), P, y0,
                    io.y.stride, false);
  const float dh = p.d[h];
  for (int l = 0; l < len; ++l) {
    float* y = io.y.row(t0 + l) + h * P;
    const float* xl = io.x.row(t0 + l) + h * P;
    const float e = std::exp(sc.cs[l]);
    for (int q = 0; q < P; ++q) y[q] = y[q] * e + dh * xl[q];
  }
  // M[l, j] = CB[l, j] exp(cs[l] - cs[j]) dt[j] for j <= l, else 0; only the
  // columns of l's row block are written (and read).
  const float* cb = call.cb + ch.cb_offset + g * call.cb_stride;
  simd::Vi<W> iota;
  for (int i = 0; i < W; ++i) iota[i] = i;
  for (int l = 0; l < len; ++l) {
    const int cols = std::min(lp, RoundUp((l / kRowBlock + 1) * kRowBlock, W));
    const Vf<W> csl = simd::Splat<W>(sc.cs[l]);
    float* mrow = sc.m.data() + static_cast<size_t>(l) * lp;
    const float* cbrow = cb + static_cast<size_t>(l) * lp;
    for (int j = 0; j < cols; j += W) {
      const Vf<W> decay = simd::Exp<W>(csl - simd::Load<W>(sc.cs.data() + j));
      Vf<W> v = simd::Load<W>(cbrow + j) * decay * simd::Load<W>(sc.dt.data() + j);
      v = simd::Select<W>(iota + j > l, simd::Splat<W>(0.0f), v);
      simd::Store<W>(mrow + j, v);
    }
  }
  // y += M X, per row block up to its last row.
  for (int r0 = 0; r0 < len; r0 += kRowBlock) {
    const int rows = std::min(kRowBlock, len - r0);
    simd::TileGemm<W>(rows, P, r0 + rows, sc.m.data() + static_cast<size_t>(r0) * lp, lp,
                      io.x.row(t0) + h * P, io.x.stride, io.y.row(t0 + r0) + h * P, io.y.stride,
                      true);
  }
  // S = exp(cs_end) S0 + (X^T diag(w)) B, w[j] = exp(cs_end - cs[j]) dt[j].
  const float total = sc.cs[len - 1];
  const float e_total = std::exp(total);
  for (int64_t i = 0; i < static_cast<int64_t>(P) * N; ++i) st[i] *= e_total;
  for (int j = 0; j < len; ++j) {
    const float wj = std::exp(total - sc.cs[j]) * sc.dt[j];
    const float* xj = io.x.row(t0 + j) + h * P;
    for (int q = 0; q < P; ++q) sc.xt[static_cast<size_t>(q) * len + j] = xj[q] * wj;
  }
  simd::TileGemm<W>(P, N, len, sc.xt.data(), len, io.b.row(t0) + g * N, io.b.stride, st, N, true);
}

using CbFn = void (*)(const Call&, const Chunk&, int, std::vector<float>&);
using HeadFn = void (*)(const Call&, int, const Chunk&, int, HeadScratch&);

#if defined(__x86_64__)
HC_TARGET_AVX512 void ChunkCbAvx512(const Call& c, const Chunk& ch, int g, std::vector<float>& b) {
  ChunkCb<16>(c, ch, g, b);
}
HC_TARGET_AVX512 void ScanHeadAvx512(const Call& c, int s, const Chunk& ch, int h,
                                     HeadScratch& sc) {
  ScanChunkHead<16>(c, s, ch, h, sc);
}
HC_TARGET_AVX2 void ChunkCbAvx2(const Call& c, const Chunk& ch, int g, std::vector<float>& b) {
  ChunkCb<8>(c, ch, g, b);
}
HC_TARGET_AVX2 void ScanHeadAvx2(const Call& c, int s, const Chunk& ch, int h, HeadScratch& sc) {
  ScanChunkHead<8>(c, s, ch, h, sc);
}
#endif
void ChunkCbPortable(const Call& c, const Chunk& ch, int g, std::vector<float>& b) {
  ChunkCb<4>(c, ch, g, b);
}
void ScanHeadPortable(const Call& c, int s, const Chunk& ch, int h, HeadScratch& sc) {
  ScanChunkHead<4>(c, s, ch, h, sc);
}

// One state row of the recurrence: s[n] = s[n] * decay + dx * b[n]; returns
// sum_n s[n] * c[n].
float UpdateRowGeneric(float* s, const float* b, const float* c, float decay, float dx, int n) {
  float acc = 0.0f;
  for (int i = 0; i < n; ++i) {
    s[i] = s[i] * decay + dx * b[i];
    acc += s[i] * c[i];
  }
  return acc;
}

// One head's P state rows [P, N] for one token: y[q] = (row q's sum) + d x[q]
// with dx = dt x[q]. The row loop sits inside the ISA's function (one call
// per head, not per row).
void UpdateHeadGeneric(float* state, const float* b, const float* c, float decay, float dt,
                       const float* x, float d, int P, int N, float* y) {
  for (int q = 0; q < P; ++q) {
    y[q] =
        UpdateRowGeneric(state + static_cast<int64_t>(q) * N, b, c, decay, dt * x[q], N) + d * x[q];
  }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void UpdateHeadAvx2(float* state, const float* b,
                                                        const float* c, float decay, float dt,
                                                        const float* x, float d, int P, int N,
                                                        float* y) {
  const __m256 vd = _mm256_set1_ps(decay);
  for (int q = 0; q < P; ++q) {
    float* s = state + static_cast<int64_t>(q) * N;
    const float dx = dt * x[q];
    const __m256 vx = _mm256_set1_ps(dx);
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= N; i += 8) {
      const __m256 v =
          _mm256_fmadd_ps(_mm256_loadu_ps(s + i), vd, _mm256_mul_ps(vx, _mm256_loadu_ps(b + i)));
      _mm256_storeu_ps(s + i, v);
      acc = _mm256_fmadd_ps(v, _mm256_loadu_ps(c + i), acc);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, acc);
    float total = 0.0f;
    for (float l : lanes) total += l;
    y[q] = total + UpdateRowGeneric(s + i, b + i, c + i, decay, dx, N - i) + d * x[q];
  }
}

// 16 lanes; the lane sum is _mm512_reduce_add_ps (whose use of
// _mm256_undefined_pd GCC 12 reports as maybe-uninitialized).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) void UpdateHeadAvx512(float* state, const float* b,
                                                         const float* c, float decay, float dt,
                                                         const float* x, float d, int P, int N,
                                                         float* y) {
  const __m512 vd = _mm512_set1_ps(decay);
  const int n16 = N & ~15;
  const __mmask16 tail = static_cast<__mmask16>((1u << (N - n16)) - 1);
  for (int q = 0; q < P; ++q) {
    float* s = state + static_cast<int64_t>(q) * N;
    const __m512 vx = _mm512_set1_ps(dt * x[q]);
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i < n16; i += 16) {
      const __m512 v =
          _mm512_fmadd_ps(_mm512_loadu_ps(s + i), vd, _mm512_mul_ps(vx, _mm512_loadu_ps(b + i)));
      _mm512_storeu_ps(s + i, v);
      acc = _mm512_fmadd_ps(v, _mm512_loadu_ps(c + i), acc);
    }
    if (tail != 0) {  // masked lanes: state untouched, 0 added to acc
      const __m512 v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, s + n16), vd,
                                       _mm512_mul_ps(vx, _mm512_maskz_loadu_ps(tail, b + n16)));
      _mm512_mask_storeu_ps(s + n16, tail, v);
      acc = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(tail, c + n16), acc);
    }
    y[q] = _mm512_reduce_add_ps(acc) + d * x[q];
  }
}
#pragma GCC diagnostic pop
#endif

using UpdateHeadFn = void (*)(float*, const float*, const float*, float, float, const float*, float,
                              int, int, float*);
UpdateHeadFn PickUpdateHead(simd::SimdWidth width) {
#if defined(__x86_64__)
  if (simd::SimdLanes(width) >= 16) return UpdateHeadAvx512;
  if (simd::SimdLanes(width) >= 8) return UpdateHeadAvx2;
#else
  (void)width;
#endif
  return UpdateHeadGeneric;
}

class CpuMamba2 final : public Mamba2Kernels {
 public:
  explicit CpuMamba2(simd::SimdWidth width)
      : lanes_(simd::SimdLanes(width)), update_head_(PickUpdateHead(width)) {
    switch (lanes_) {
#if defined(__x86_64__)
      case 16:
        cb_fn_ = ChunkCbAvx512;
        head_fn_ = ScanHeadAvx512;
        break;
      case 8:
        cb_fn_ = ChunkCbAvx2;
        head_fn_ = ScanHeadAvx2;
        break;
#endif
      default:
        cb_fn_ = ChunkCbPortable;
        head_fn_ = ScanHeadPortable;
        break;
    }
  }

  void SsdChunkScanVarlen(const SsmParams& p, const VarlenBatch& batch, const int32_t* slots,
                          const SsmTensors& io) const override {
    const int L = p.chunk_size, G = p.num_groups;
    const int64_t cb_stride = static_cast<int64_t>(L) * RoundUp(L, lanes_);
    std::vector<std::vector<Chunk>> chunks(batch.num_seqs);
    std::vector<std::pair<int, int>> cb_units;  // (seq, chunk index) x G below
    int64_t cb_floats = 0;
    for (int s = 0; s < batch.num_seqs; ++s) {
      const int end = batch.query_start_loc[s + 1];
      for (int t0 = batch.query_start_loc[s]; t0 < end; t0 += L) {
        chunks[s].push_back({t0, std::min(L, end - t0), cb_floats});
        cb_units.emplace_back(s, static_cast<int>(chunks[s].size()) - 1);
        cb_floats += G * cb_stride;
      }
    }
    if (cb_floats == 0) return;
    std::vector<float> cb(cb_floats);
    const Call call{&p, &io, &chunks, slots, cb.data(), cb_stride};
    const CbFn cb_fn = cb_fn_;
    ParallelFor(static_cast<int64_t>(cb_units.size()) * G, 1, [&](int64_t lo, int64_t hi) {
      std::vector<float> bt;
      for (int64_t i = lo; i < hi; ++i) {
        const auto [s, c] = cb_units[i / G];
        cb_fn(call, chunks[s][c], static_cast<int>(i % G), bt);
      }
    });
    // Chunk-major: round k runs chunk k of every sequence that has one, all
    // heads in parallel, so a chunk's rows stay in cache across its heads.
    const HeadFn head_fn = head_fn_;
    const int H = p.num_heads;
    size_t rounds = 0;
    for (const auto& c : chunks) rounds = std::max(rounds, c.size());
    std::vector<int> seqs;
    for (size_t k = 0; k < rounds; ++k) {
      seqs.clear();
      for (int s = 0; s < batch.num_seqs; ++s) {
        if (chunks[s].size() > k) seqs.push_back(s);
      }
      ParallelFor(static_cast<int64_t>(seqs.size()) * H, 1, [&](int64_t lo, int64_t hi) {
        HeadScratch sc;
        for (int64_t i = lo; i < hi; ++i) {
          const int s = seqs[i / H];
          head_fn(call, s, chunks[s][k], static_cast<int>(i % H), sc);
        }
      });
    }
  }

  void SelectiveStateUpdate(const SsmParams& p, int batch_size, const int32_t* slots,
                            const SsmTensors& io) const override {
    const int H = p.num_heads, P = p.head_dim, N = p.state_size;
    const int heads_per_group = H / p.num_groups;
    const UpdateHeadFn update_head = update_head_;
    // One (sequence, head) per index: disjoint state rows and outputs.
    ParallelFor(static_cast<int64_t>(batch_size) * H, 4, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const int b = static_cast<int>(i / H), h = static_cast<int>(i % H);
        float* state = p.state + static_cast<int64_t>(slots[b]) * H * P * N;
        const int g = h / heads_per_group;
        const float dt = Dt(p, io.dt.row(b)[h], h);
        const float decay = std::exp(dt * -std::exp(p.a_log[h]));
        update_head(state + static_cast<int64_t>(h) * P * N, io.b.row(b) + g * N,
                    io.c.row(b) + g * N, decay, dt, io.x.row(b) + h * P, p.d[h], P, N,
                    io.y.row(b) + h * P);
      }
    });
  }

 private:
  const int lanes_;
  const UpdateHeadFn update_head_;
  CbFn cb_fn_ = nullptr;
  HeadFn head_fn_ = nullptr;
};

}  // namespace

std::unique_ptr<Mamba2Kernels> CreateCpuMamba2Kernels(simd::SimdWidth width) {
  return std::make_unique<CpuMamba2>(width);
}

std::unique_ptr<Mamba2Kernels> CreateCpuMamba2Kernels() {
  return CreateCpuMamba2Kernels(simd::SimdWidth::kAuto);
}

}  // namespace hc::kernels
