// CPU causal depthwise conv1d (see kernels/conv1d.h for the contract).
#include <cmath>
#include <memory>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"

namespace hc::kernels {
namespace {

inline float Silu(float x) { return x / (1.0f + std::exp(-x)); }

class CpuConv1d final : public Conv1dKernels {
 public:
  void CausalConv1dVarlen(const Conv1dParams& p, const VarlenBatch& batch, const int32_t* slots,
                          ConstRows x, Rows out) const override {
    const int hist = p.width - 1;
    std::vector<float> new_state(static_cast<size_t>(p.conv_dim) * hist);
    for (int s = 0; s < batch.num_seqs; ++s) {
      const int begin = batch.query_start_loc[s];
      const int len = batch.query_start_loc[s + 1] - begin;
      if (len <= 0) continue;
      float* state = p.state + static_cast<int64_t>(slots[s]) * p.conv_dim * hist;
      // u(j, c): j < hist is state column j, else new token j - hist.
      auto u = [&](int j, int c) -> float {
        return j < hist ? state[static_cast<int64_t>(c) * hist + j] : x.row(begin + j - hist)[c];
      };
      for (int t = 0; t < len; ++t) {
        float* o = out.row(begin + t);
        for (int c = 0; c < p.conv_dim; ++c) {
          const float* w = p.weight + static_cast<int64_t>(c) * p.width;
          float acc = p.bias != nullptr ? p.bias[c] : 0.0f;
          for (int k = 0; k < p.width; ++k) acc += w[k] * u(t + k, c);
          o[c] = p.apply_silu ? Silu(acc) : acc;
        }
      }
      // The last `hist` inputs of state ++ x are u(len + j, c), j < hist.
      for (int c = 0; c < p.conv_dim; ++c) {
        for (int j = 0; j < hist; ++j) new_state[static_cast<size_t>(c) * hist + j] = u(len + j, c);
      }
      std::copy(new_state.begin(), new_state.end(), state);
    }
  }

  void CausalConv1dUpdate(const Conv1dParams& p, int batch_size, const int32_t* slots, ConstRows x,
                          Rows out) const override {
    const int hist = p.width - 1;
    for (int b = 0; b < batch_size; ++b) {
      float* state = p.state + static_cast<int64_t>(slots[b]) * p.conv_dim * hist;
      const float* xs = x.row(b);
      float* o = out.row(b);
      for (int c = 0; c < p.conv_dim; ++c) {
        const float* w = p.weight + static_cast<int64_t>(c) * p.width;
        float* st = state + static_cast<int64_t>(c) * hist;
        float acc = p.bias != nullptr ? p.bias[c] : 0.0f;
        for (int k = 0; k < hist; ++k) acc += w[k] * st[k];
        acc += w[hist] * xs[c];
        for (int k = 0; k + 1 < hist; ++k) st[k] = st[k + 1];
        if (hist > 0) st[hist - 1] = xs[c];
        o[c] = p.apply_silu ? Silu(acc) : acc;
      }
    }
  }
};

}  // namespace

std::unique_ptr<Conv1dKernels> CreateCpuConv1dKernels() { return std::make_unique<CpuConv1d>(); }

}  // namespace hc::kernels
