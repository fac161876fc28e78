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

class CpuMamba2 final : public Mamba2Kernels {
 public:
  void SsdChunkScanVarlen(const SsmParams& p, const VarlenBatch& batch, const int32_t* slots,
                          const SsmTensors& io) const override {
    const int H = p.num_heads, P = p.head_dim, N = p.state_size;
    const int heads_per_group = H / p.num_groups;
    const int64_t slot_elems = static_cast<int64_t>(H) * P * N;
    const int L = p.chunk_size;
    std::vector<float> cb(static_cast<size_t>(L) * L);  // C[l] . B[s], one group
    std::vector<float> dt(L), cs(L), w(L);
    std::vector<float> sc(static_cast<size_t>(L) * P);   // S0 C[l] per p (scratch)
    for (int s = 0; s < batch.num_seqs; ++s) {
      const int begin = batch.query_start_loc[s];
      const int end = batch.query_start_loc[s + 1];
      float* state = p.state + slots[s] * slot_elems;
      for (int t0 = begin; t0 < end; t0 += L) {
        const int len = std::min(L, end - t0);
        for (int g = 0; g < p.num_groups; ++g) {
          for (int l = 0; l < len; ++l) {
            const float* cl = io.c.row(t0 + l) + g * N;
            for (int j = 0; j <= l; ++j) {
              const float* bj = io.b.row(t0 + j) + g * N;
              float acc = 0.0f;
              for (int n = 0; n < N; ++n) acc += cl[n] * bj[n];
              cb[static_cast<size_t>(l) * L + j] = acc;
            }
          }
          for (int h = g * heads_per_group; h < (g + 1) * heads_per_group; ++h) {
            ChunkHead(p, io, t0, len, g, h, state + static_cast<int64_t>(h) * P * N, cb, dt, cs, w,
                      sc);
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
          const float dx = dt * x[q];
          float acc = 0.0f;
          for (int n = 0; n < N; ++n) {
            sp[n] = sp[n] * decay + dx * bv[n];
            acc += sp[n] * cv[n];
          }
          y[q] = acc + p.d[h] * x[q];
        }
      }
    }
  }

 private:
  // One head over one chunk [t0, t0 + len); `st` is the head's [P, N] state.
  static void ChunkHead(const SsmParams& p, const SsmTensors& io, int t0, int len, int g, int h,
                        float* st, const std::vector<float>& cb, std::vector<float>& dt,
                        std::vector<float>& cs, std::vector<float>& w,
                        std::vector<float>& sc) {
    const int P = p.head_dim, N = p.state_size, L = p.chunk_size;
    const float a = -std::exp(p.a_log[h]);
    float run = 0.0f;
    for (int l = 0; l < len; ++l) {
      dt[l] = Dt(p, io.dt.row(t0 + l)[h], h);
      run += dt[l] * a;
      cs[l] = run;
    }
    // Contribution of the incoming state: y[l, q] = exp(cs[l]) * sum_n S0[q, n] C[l, n].
    for (int l = 0; l < len; ++l) {
      const float* cl = io.c.row(t0 + l) + g * N;
      const float e = std::exp(cs[l]);
      for (int q = 0; q < P; ++q) {
        const float* sq = st + static_cast<int64_t>(q) * N;
        float acc = 0.0f;
        for (int n = 0; n < N; ++n) acc += sq[n] * cl[n];
        sc[static_cast<size_t>(l) * P + q] = e * acc;
      }
    }
    // Intra-chunk (quadratic) term and D skip.
    for (int l = 0; l < len; ++l) {
      float* y = io.y.row(t0 + l) + h * P;
      const float* xl = io.x.row(t0 + l) + h * P;
      for (int q = 0; q < P; ++q) y[q] = sc[static_cast<size_t>(l) * P + q] + p.d[h] * xl[q];
      for (int j = 0; j <= l; ++j) {
        const float m = cb[static_cast<size_t>(l) * L + j] * std::exp(cs[l] - cs[j]) * dt[j];
        const float* xj = io.x.row(t0 + j) + h * P;
        for (int q = 0; q < P; ++q) y[q] += m * xj[q];
      }
    }
    // State at the end of the chunk.
    const float total = cs[len - 1];
    for (int j = 0; j < len; ++j) w[j] = std::exp(total - cs[j]) * dt[j];
    const float e_total = std::exp(total);
    for (int q = 0; q < P; ++q) {
      float* sq = st + static_cast<int64_t>(q) * N;
      for (int n = 0; n < N; ++n) sq[n] *= e_total;
      for (int j = 0; j < len; ++j) {
        const float coef = w[j] * (io.x.row(t0 + j) + h * P)[q];
        const float* bj = io.b.row(t0 + j) + g * N;
        for (int n = 0; n < N; ++n) sq[n] += coef * bj[n];
      }
    }
  }
};

}  // namespace

std::unique_ptr<Mamba2Kernels> CreateCpuMamba2Kernels() { return std::make_unique<CpuMamba2>(); }

}  // namespace hc::kernels
