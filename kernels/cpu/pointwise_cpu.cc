// CPU norms, RoPE and element-wise kernels (fp32; the compiler vectorises the
// inner loops). Each splits its tokens (rows) over the calling thread's
// intra-op pool; every row is computed by one range exactly as it would be
// sequentially, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "common/intra_op.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/half.h"

namespace hc::kernels {
namespace {

inline float Silu(float x) { return x / (1.0f + std::exp(-x)); }

// The grain every kernel class of this file holds (CpuParallelGrain).
class Grained {
 public:
  explicit Grained(int64_t min_elems) : min_elems_(std::max<int64_t>(min_elems, 1)) {}

 protected:
  // fn(t0, t1) over row ranges of at least min_elems_ elements (rows of
  // `row_elems`) on the bound intra-op pool.
  template <typename Fn>
  void SplitRows(int num_rows, int64_t row_elems, const Fn& fn) const {
    const int64_t grain = std::max<int64_t>(1, min_elems_ / std::max<int64_t>(row_elems, 1));
    ParallelFor(num_rows, grain,
                [&](int64_t t0, int64_t t1) { fn(static_cast<int>(t0), static_cast<int>(t1)); });
  }

 private:
  int64_t min_elems_;
};

class CpuNorm final : public NormKernels, Grained {
 public:
  using Grained::Grained;

  void RmsNorm(const RmsNormArgs& a) const override {
    SplitRows(a.num_tokens, a.dim, [&](int t0, int t1) { RmsNormRows(a, t0, t1); });
  }

  void GatedSumSquares(const GatedNormArgs& a, float* sum_sq) const override {
    SplitRows(a.num_tokens, static_cast<int64_t>(a.num_groups) * a.group_size,
              [&](int t0, int t1) { GatedSumSquaresRows(a, sum_sq, t0, t1); });
  }

  void GatedNormApply(const GatedNormArgs& a, const float* sum_sq) const override {
    SplitRows(a.num_tokens, static_cast<int64_t>(a.num_groups) * a.group_size,
              [&](int t0, int t1) { GatedNormApplyRows(a, sum_sq, t0, t1); });
  }

 private:
  static void RmsNormRows(const RmsNormArgs& a, int t0, int t1) {
    for (int t = t0; t < t1; ++t) {
      const float* x = a.x.row(t);
      float* out = a.out.row(t);
      double ss = 0.0;
      for (int i = 0; i < a.dim; ++i) ss += static_cast<double>(x[i]) * x[i];
      const float inv = 1.0f / std::sqrt(static_cast<float>(ss / a.dim) + a.eps);
      for (int i = 0; i < a.dim; ++i) out[i] = x[i] * inv * a.weight[i];
    }
  }

  static void GatedSumSquaresRows(const GatedNormArgs& a, float* sum_sq, int t0, int t1) {
    for (int t = t0; t < t1; ++t) {
      const float* y = a.y.row(t);
      const float* z = a.z.row(t);
      for (int g = 0; g < a.num_groups; ++g) {
        double ss = 0.0;
        for (int i = g * a.group_size; i < (g + 1) * a.group_size; ++i) {
          const float v = y[i] * Silu(z[i]);
          ss += static_cast<double>(v) * v;
        }
        sum_sq[static_cast<int64_t>(t) * a.num_groups + g] = static_cast<float>(ss);
      }
    }
  }

  static void GatedNormApplyRows(const GatedNormArgs& a, const float* sum_sq, int t0, int t1) {
    for (int t = t0; t < t1; ++t) {
      const float* y = a.y.row(t);
      const float* z = a.z.row(t);
      float* out = a.out.row(t);
      for (int g = 0; g < a.num_groups; ++g) {
        const float ms = sum_sq[static_cast<int64_t>(t) * a.num_groups + g] / a.norm_count;
        const float inv = 1.0f / std::sqrt(ms + a.eps);
        for (int i = g * a.group_size; i < (g + 1) * a.group_size; ++i) {
          out[i] = y[i] * Silu(z[i]) * inv * a.weight[i];
        }
      }
    }
  }
};

class CpuRope final : public RopeKernel, Grained {
 public:
  using Grained::Grained;

  void ApplyRope(const RopeArgs& a) const override {
    const int half = a.rotary_dim / 2;
    if (half == 0) return;
    std::vector<float> inv_freq(half);
    for (int i = 0; i < half; ++i) {
      inv_freq[i] = static_cast<float>(
          1.0 / std::pow(static_cast<double>(a.theta), (2.0 * i) / a.rotary_dim));
    }
    const int64_t token_elems = static_cast<int64_t>(a.num_q_heads + a.num_kv_heads) * a.rotary_dim;
    SplitRows(a.num_tokens, token_elems, [&](int t0, int t1) { RopeRows(a, inv_freq, t0, t1); });
  }

 private:
  static void RopeRows(const RopeArgs& a, const std::vector<float>& inv_freq, int t0, int t1) {
    const int half = a.rotary_dim / 2;
    std::vector<float> cos_v(half), sin_v(half);
    for (int t = t0; t < t1; ++t) {
      const float pos = static_cast<float>(a.positions[t]);
      for (int i = 0; i < half; ++i) {
        const float angle = pos * inv_freq[i];
        cos_v[i] = std::cos(angle);
        sin_v[i] = std::sin(angle);
      }
      auto rotate = [&](float* head) {
        for (int i = 0; i < half; ++i) {
          const float x1 = head[i];
          const float x2 = head[i + half];
          head[i] = x1 * cos_v[i] - x2 * sin_v[i];
          head[i + half] = x2 * cos_v[i] + x1 * sin_v[i];
        }
      };
      for (int h = 0; h < a.num_q_heads; ++h) rotate(a.q.row(t) + h * a.head_dim);
      for (int h = 0; h < a.num_kv_heads; ++h) rotate(a.k.row(t) + h * a.head_dim);
    }
  }
};

class CpuElementwise final : public ElementwiseKernels, Grained {
 public:
  using Grained::Grained;

  void SiluMul(int num_tokens, int width, ConstRows gate_up, Rows out) const override {
    SplitRows(num_tokens, width, [&](int t0, int t1) {
      for (int t = t0; t < t1; ++t) {
        const float* g = gate_up.row(t);
        const float* u = g + width;
        float* o = out.row(t);
        for (int i = 0; i < width; ++i) o[i] = Silu(g[i]) * u[i];
      }
    });
  }

  void EmbeddingGather(int num_tokens, const int32_t* ids, const float* table, int dim,
                       Rows out) const override {
    SplitRows(num_tokens, dim, [&](int t0, int t1) {
      for (int t = t0; t < t1; ++t) {
        std::memcpy(out.row(t), table + static_cast<int64_t>(ids[t]) * dim, sizeof(float) * dim);
      }
    });
  }

  void EmbeddingGatherBf16(int num_tokens, const int32_t* ids, const uint16_t* table, int dim,
                           Rows out) const override {
    SplitRows(num_tokens, dim, [&](int t0, int t1) {
      for (int t = t0; t < t1; ++t) {
        const uint16_t* src = table + static_cast<int64_t>(ids[t]) * dim;
        float* o = out.row(t);
        for (int i = 0; i < dim; ++i) o[i] = Bf16ToF32(src[i]);
      }
    });
  }

  void AddRows(int num_tokens, int dim, ConstRows x, Rows y) const override {
    SplitRows(num_tokens, dim, [&](int t0, int t1) {
      for (int t = t0; t < t1; ++t) {
        const float* xs = x.row(t);
        float* ys = y.row(t);
        for (int i = 0; i < dim; ++i) ys[i] += xs[i];
      }
    });
  }

  void Relu2(int num_tokens, int width, ConstRows x, Rows out) const override {
    SplitRows(num_tokens, width, [&](int t0, int t1) {
      for (int t = t0; t < t1; ++t) {
        const float* xs = x.row(t);
        float* o = out.row(t);
        for (int i = 0; i < width; ++i) {
          const float r = xs[i] > 0.0f ? xs[i] : 0.0f;
          o[i] = r * r;
        }
      }
    });
  }

  void ScaleRows(int num_tokens, int dim, float alpha, Rows x) const override {
    SplitRows(num_tokens, dim, [&](int t0, int t1) {
      for (int t = t0; t < t1; ++t) {
        float* xs = x.row(t);
        for (int i = 0; i < dim; ++i) xs[i] *= alpha;
      }
    });
  }

  // Split over source rows: the rows they add into are distinct (the
  // interface's contract), so every y row is written by one range, once.
  void ScatterAddRows(int num_rows, int dim, const int32_t* rows, const float* weights, ConstRows x,
                      Rows y) const override {
    SplitRows(num_rows, dim, [&](int r0, int r1) {
      for (int r = r0; r < r1; ++r) {
        const float* xs = x.row(r);
        float* ys = y.row(rows[r]);
        const float w = weights[r];
        for (int i = 0; i < dim; ++i) ys[i] += w * xs[i];
      }
    });
  }
};

}  // namespace

std::unique_ptr<NormKernels> CreateCpuNormKernels(int64_t min_elems) {
  return std::make_unique<CpuNorm>(min_elems);
}
std::unique_ptr<RopeKernel> CreateCpuRopeKernel(int64_t min_elems) {
  return std::make_unique<CpuRope>(min_elems);
}
std::unique_ptr<ElementwiseKernels> CreateCpuElementwiseKernels(int64_t min_elems) {
  return std::make_unique<CpuElementwise>(min_elems);
}

}  // namespace hc::kernels
