// CPU norms, RoPE and element-wise kernels (fp32, sequential; the compiler
// vectorises the inner loops).
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/half.h"

namespace hc::kernels {
namespace {

inline float Silu(float x) { return x / (1.0f + std::exp(-x)); }

class CpuNorm final : public NormKernels {
 public:
  void RmsNorm(const RmsNormArgs& a) const override {
    for (int t = 0; t < a.num_tokens; ++t) {
      const float* x = a.x.row(t);
      float* out = a.out.row(t);
      double ss = 0.0;
      for (int i = 0; i < a.dim; ++i) ss += static_cast<double>(x[i]) * x[i];
      const float inv = 1.0f / std::sqrt(static_cast<float>(ss / a.dim) + a.eps);
      for (int i = 0; i < a.dim; ++i) out[i] = x[i] * inv * a.weight[i];
    }
  }

  void GatedSumSquares(const GatedNormArgs& a, float* sum_sq) const override {
    for (int t = 0; t < a.num_tokens; ++t) {
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

  void GatedNormApply(const GatedNormArgs& a, const float* sum_sq) const override {
    for (int t = 0; t < a.num_tokens; ++t) {
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

class CpuRope final : public RopeKernel {
 public:
  void ApplyRope(const RopeArgs& a) const override {
    const int half = a.rotary_dim / 2;
    if (half == 0) return;
    std::vector<float> inv_freq(half), cos_v(half), sin_v(half);
    for (int i = 0; i < half; ++i) {
      inv_freq[i] = static_cast<float>(
          1.0 / std::pow(static_cast<double>(a.theta), (2.0 * i) / a.rotary_dim));
    }
    for (int t = 0; t < a.num_tokens; ++t) {
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

class CpuElementwise final : public ElementwiseKernels {
 public:
  void SiluMul(int num_tokens, int width, ConstRows gate_up, Rows out) const override {
    for (int t = 0; t < num_tokens; ++t) {
      const float* g = gate_up.row(t);
      const float* u = g + width;
      float* o = out.row(t);
      for (int i = 0; i < width; ++i) o[i] = Silu(g[i]) * u[i];
    }
  }

  void EmbeddingGather(int num_tokens, const int32_t* ids, const float* table, int dim,
                       Rows out) const override {
    for (int t = 0; t < num_tokens; ++t) {
      std::memcpy(out.row(t), table + static_cast<int64_t>(ids[t]) * dim, sizeof(float) * dim);
    }
  }

  void EmbeddingGatherBf16(int num_tokens, const int32_t* ids, const uint16_t* table, int dim,
                           Rows out) const override {
    for (int t = 0; t < num_tokens; ++t) {
      const uint16_t* src = table + static_cast<int64_t>(ids[t]) * dim;
      float* o = out.row(t);
      for (int i = 0; i < dim; ++i) o[i] = Bf16ToF32(src[i]);
    }
  }

  void AddRows(int num_tokens, int dim, ConstRows x, Rows y) const override {
    for (int t = 0; t < num_tokens; ++t) {
      const float* xs = x.row(t);
      float* ys = y.row(t);
      for (int i = 0; i < dim; ++i) ys[i] += xs[i];
    }
  }

  void Relu2(int num_tokens, int width, ConstRows x, Rows out) const override {
    for (int t = 0; t < num_tokens; ++t) {
      const float* xs = x.row(t);
      float* o = out.row(t);
      for (int i = 0; i < width; ++i) {
        const float r = xs[i] > 0.0f ? xs[i] : 0.0f;
        o[i] = r * r;
      }
    }
  }

  void ScaleRows(int num_tokens, int dim, float alpha, Rows x) const override {
    for (int t = 0; t < num_tokens; ++t) {
      float* xs = x.row(t);
      for (int i = 0; i < dim; ++i) xs[i] *= alpha;
    }
  }

  void ScatterAddRows(int num_rows, int dim, const int32_t* rows, const float* weights, ConstRows x,
                      Rows y) const override {
    for (int r = 0; r < num_rows; ++r) {
      const float* xs = x.row(r);
      float* ys = y.row(rows[r]);
      const float w = weights[r];
      for (int i = 0; i < dim; ++i) ys[i] += w * xs[i];
    }
  }
};

}  // namespace

std::unique_ptr<NormKernels> CreateCpuNormKernels() { return std::make_unique<CpuNorm>(); }
std::unique_ptr<RopeKernel> CreateCpuRopeKernel() { return std::make_unique<CpuRope>(); }
std::unique_ptr<ElementwiseKernels> CreateCpuElementwiseKernels() {
  return std::make_unique<CpuElementwise>();
}

}  // namespace hc::kernels
