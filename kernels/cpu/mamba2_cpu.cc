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
// The products run on the own blocked GEMM (kernels/cpu/gemm_cpu.cc; its AVX2
// kernel measured faster than the AVX-512 one on these small-K products).
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"

namespace hc::kernels {
namespace {

inline float Softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

inline float Dt(const SsmParams& p, float raw, int h) {
  return std::clamp(Softplus(raw + p.dt_bias[h]), p.dt_min, p.dt_max);
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

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) float UpdateRowAvx2(float* s, const float* b, const float* c,
                                                        float decay, float dx, int n) {
  const __m256 vd = _mm256_set1_ps(decay), vx = _mm256_set1_ps(dx);
  __m256 acc = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v =
        _mm256_fmadd_ps(_mm256_loadu_ps(s + i), vd, _mm256_mul_ps(vx, _mm256_loadu_ps(b + i)));
    _mm256_storeu_ps(s + i, v);
    acc = _mm256_fmadd_ps(v, _mm256_loadu_ps(c + i), acc);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  float total = 0.0f;
  for (float l : lanes) total += l;
  return total + UpdateRowGeneric(s + i, b + i, c + i, decay, dx, n - i);
}

using UpdateRowFn = float (*)(float*, const float*, const float*, float, float, int);
UpdateRowFn PickUpdateRow() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? UpdateRowAvx2
                                                                         : UpdateRowGeneric;
}
#else
using UpdateRowFn = float (*)(float*, const float*, const float*, float, float, int);
UpdateRowFn PickUpdateRow() { return UpdateRowGeneric; }
#endif

class CpuMamba2 final : public Mamba2Kernels {
 public:
  CpuMamba2() : gemm_(std::move(CreateCpuGemm(CpuGemmImpl::kBlocked)).value()) {}

  void SsdChunkScanVarlen(const SsmParams& p, const VarlenBatch& batch, const int32_t* slots,
                          const SsmTensors& io) const override {
    const int H = p.num_heads, P = p.head_dim, N = p.state_size, L = p.chunk_size;
    const int heads_per_group = H / p.num_groups;
    const int64_t slot_elems = static_cast<int64_t>(H) * P * N;
    Scratch sc(L, P, N);
    for (int s = 0; s < batch.num_seqs; ++s) {
      const int begin = batch.query_start_loc[s];
      const int end = batch.query_start_loc[s + 1];
      float* state = p.state + slots[s] * slot_elems;
      for (int t0 = begin; t0 < end; t0 += L) {
        const int len = std::min(L, end - t0);
        for (int g = 0; g < p.num_groups; ++g) {
          // cb[l, j] = C[l] . B[j] (all l, j; the causal mask is applied per head).
          gemm_->Gemm({.m = len,
                       .n = len,
                       .k = N,
                       .a = io.c.row(t0) + g * N,
                       .lda = io.c.stride,
                       .b = io.b.row(t0) + g * N,
                       .ldb = io.b.stride,
                       .c = sc.cb.data(),
                       .ldc = len});
          // bt[n, j] = B[j, n].
          for (int j = 0; j < len; ++j) {
            const float* bj = io.b.row(t0 + j) + g * N;
            for (int n = 0; n < N; ++n) sc.bt[static_cast<size_t>(n) * len + j] = bj[n];
          }
          for (int h = g * heads_per_group; h < (g + 1) * heads_per_group; ++h) {
            ChunkHead(p, io, t0, len, g, h, state + static_cast<int64_t>(h) * P * N, sc);
          }
        }
      }
    }
  }

  void SelectiveStateUpdate(const SsmParams& p, int batch_size, const int32_t* slots,
                            const SsmTensors& io) const override {
    const int H = p.num_heads, P = p.head_dim, N = p.state_size;
    const int heads_per_group = H / p.num_groups;
    for (int b = 0; b < batch_size; ++b) {
      float* state = p.state + static_cast<int64_t>(slots[b]) * H * P * N;
      for (int h = 0; h < H; ++h) {
        const int g = h / heads_per_group;
        const float dt = Dt(p, io.dt.row(b)[h], h);
        const float decay = std::exp(dt * -std::exp(p.a_log[h]));
        const float* x = io.x.row(b) + h * P;
        const float* bv = io.b.row(b) + g * N;
        const float* cv = io.c.row(b) + g * N;
        float* y = io.y.row(b) + h * P;
        for (int q = 0; q < P; ++q) {
          float* sp = state + (static_cast<int64_t>(h) * P + q) * N;
          y[q] = update_row_(sp, bv, cv, decay, dt * x[q], N) + p.d[h] * x[q];
        }
      }
    }
  }

 private:
  struct Scratch {
    Scratch(int L, int P, int N)
        : cb(static_cast<size_t>(L) * L),
          m(static_cast<size_t>(L) * L),
          bt(static_cast<size_t>(N) * L),
          xt(static_cast<size_t>(P) * L),
          dt(L),
          cs(L) {}
    std::vector<float> cb, m, bt, xt, dt, cs;
  };

  // One head over one chunk [t0, t0 + len); `st` is the head's [P, N] state.
  // The three terms are GEMMs on the blocked kernel:
  //   y  = diag(exp(cs)) C S0^T                      [len, P]
  //   y += M X,  M[l, j] = cb[l, j] exp(cs[l] - cs[j]) dt[j]  (j <= l)
  //   S  = exp(cs[len-1]) S0 + (X^T diag(w)) B,  w[j] = exp(cs[len-1] - cs[j]) dt[j]
  void ChunkHead(const SsmParams& p, const SsmTensors& io, int t0, int len, int g, int h, float* st,
                 Scratch& sc) const {
    const int P = p.head_dim, N = p.state_size;
    const float a = -std::exp(p.a_log[h]);
    float run = 0.0f;
    for (int l = 0; l < len; ++l) {
      sc.dt[l] = Dt(p, io.dt.row(t0 + l)[h], h);
      run += sc.dt[l] * a;
      sc.cs[l] = run;
    }
    float* y0 = io.y.row(t0) + h * P;
    gemm_->Gemm({.m = len,
                 .n = P,
                 .k = N,
                 .a = io.c.row(t0) + g * N,
                 .lda = io.c.stride,
                 .b = st,
                 .ldb = N,
                 .c = y0,
                 .ldc = io.y.stride});
    for (int l = 0; l < len; ++l) {
      float* y = io.y.row(t0 + l) + h * P;
      const float* xl = io.x.row(t0 + l) + h * P;
      const float e = std::exp(sc.cs[l]);
      for (int q = 0; q < P; ++q) y[q] = y[q] * e + p.d[h] * xl[q];
      float* mrow = sc.m.data() + static_cast<size_t>(l) * len;
      const float* cbrow = sc.cb.data() + static_cast<size_t>(l) * len;
      for (int j = 0; j <= l; ++j) mrow[j] = cbrow[j] * std::exp(sc.cs[l] - sc.cs[j]) * sc.dt[j];
      for (int j = l + 1; j < len; ++j) mrow[j] = 0.0f;
    }
    for (int j = 0; j < len; ++j) {
      const float* xj = io.x.row(t0 + j) + h * P;
      for (int q = 0; q < P; ++q) sc.xt[static_cast<size_t>(q) * len + j] = xj[q];
    }
    gemm_->Gemm({.m = len,
                 .n = P,
                 .k = len,
                 .a = sc.m.data(),
                 .lda = len,
                 .b = sc.xt.data(),
                 .ldb = len,
                 .c = y0,
                 .ldc = io.y.stride,
                 .accumulate = true});
    const float total = sc.cs[len - 1];
    const float e_total = std::exp(total);
    for (int64_t i = 0; i < static_cast<int64_t>(P) * N; ++i) st[i] *= e_total;
    for (int j = 0; j < len; ++j) {
      const float wj = std::exp(total - sc.cs[j]) * sc.dt[j];
      for (int q = 0; q < P; ++q) sc.xt[static_cast<size_t>(q) * len + j] *= wj;
    }
    gemm_->Gemm({.m = P,
                 .n = N,
                 .k = len,
                 .a = sc.xt.data(),
                 .lda = len,
                 .b = sc.bt.data(),
                 .ldb = len,
                 .c = st,
                 .ldc = N,
                 .accumulate = true});
  }

  std::unique_ptr<GemmKernel> gemm_;
  const UpdateRowFn update_row_ = PickUpdateRow();
};

}  // namespace

std::unique_ptr<Mamba2Kernels> CreateCpuMamba2Kernels() { return std::make_unique<CpuMamba2>(); }

}  // namespace hc::kernels
