// The forward pass against a plain sequential reference of the whole model
// written here from docs/model-facts.md (fp64, per-token Mamba2 recurrence, full
// causal attention, no paging, no chunking, no sharding). The exactness tests
// check that the paths of the model agree with each other; this one checks
// that they compute the Bamba architecture.
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/unit/worker/model/test_model.h"

namespace hc::model {
namespace {

using Mat = std::vector<double>;  // row-major

class Reference {
 public:
  Reference(const ModelConfig& c, const TensorSource& s) : c_(c), s_(s) {}

  // Logits of the last token of `ids`.
  std::vector<double> LastLogits(const std::vector<int32_t>& ids) {
    const int T = ids.size(), D = c_.hidden_size;
    Mat h(T * D);
    const Mat emb = W("model.embed_tokens.weight");
    for (int t = 0; t < T; ++t) {
      for (int i = 0; i < D; ++i) h[t * D + i] = emb[ids[t] * D + i];
    }
    for (int l = 0; l < c_.num_hidden_layers; ++l) {
      const std::string p = absl::StrCat("model.layers.", l, ".");
      Mat x = RmsNorm(h, T, D, W(p + "input_layernorm.weight"));
      const Mat mix =
          c_.IsAttentionLayer(l) ? Attention(p + "self_attn.", x, T) : Mamba(p + "mamba.", x, T);
      for (size_t i = 0; i < h.size(); ++i) h[i] += mix[i];
      x = RmsNorm(h, T, D, W(p + "pre_ff_layernorm.weight"));
      const int I = c_.intermediate_size;
      const Mat g = Linear(x, T, D, W(p + "feed_forward.gate_proj.weight"), I);
      Mat u = Linear(x, T, D, W(p + "feed_forward.up_proj.weight"), I);
      for (size_t i = 0; i < u.size(); ++i) u[i] *= Silu(g[i]);
      const Mat down = Linear(u, T, I, W(p + "feed_forward.down_proj.weight"), D);
      for (size_t i = 0; i < h.size(); ++i) h[i] += down[i];
    }
    const Mat last(h.end() - D, h.end());
    const Mat n = RmsNorm(last, 1, D, W("model.final_layernorm.weight"));
    return Linear(n, 1, D,
                  W(c_.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight"),
                  c_.vocab_size);
  }

 private:
  static double Silu(double x) { return x / (1.0 + std::exp(-x)); }

  Mat W(const std::string& name) const {
    const TensorView v = s_.Get(name).value();
    const float* f = static_cast<const float*>(v.data);
    return Mat(f, f + v.num_bytes / sizeof(float));
  }

  // x [T, in] times w [out, in]^T.
  static Mat Linear(const Mat& x, int T, int in, const Mat& w, int out) {
    Mat y(T * out, 0.0);
    for (int t = 0; t < T; ++t) {
      for (int o = 0; o < out; ++o) {
        double s = 0;
        for (int i = 0; i < in; ++i) s += x[t * in + i] * w[o * in + i];
        y[t * out + o] = s;
      }
    }
    return y;
  }

  Mat RmsNorm(const Mat& x, int T, int D, const Mat& w) const {
    Mat y(T * D);
    for (int t = 0; t < T; ++t) {
      double ss = 0;
      for (int i = 0; i < D; ++i) ss += x[t * D + i] * x[t * D + i];
      const double inv = 1.0 / std::sqrt(ss / D + c_.rms_norm_eps);
      for (int i = 0; i < D; ++i) y[t * D + i] = x[t * D + i] * inv * w[i];
    }
    return y;
  }

  Mat Attention(const std::string& p, const Mat& x, int T) const {
    const int D = c_.hidden_size, hd = c_.head_dim, hq = c_.num_attention_heads;
    const int hkv = c_.num_key_value_heads, rd = c_.rotary_dim();
    Mat q = Linear(x, T, D, W(p + "q_proj.weight"), hq * hd);
    Mat k = Linear(x, T, D, W(p + "k_proj.weight"), hkv * hd);
    const Mat v = Linear(x, T, D, W(p + "v_proj.weight"), hkv * hd);
    auto rope = [&](Mat& m, int heads) {
      for (int t = 0; t < T; ++t) {
        for (int h = 0; h < heads; ++h) {
          double* e = &m[(t * heads + h) * hd];
          const Mat orig(e, e + rd);
          for (int i = 0; i < rd; ++i) {
            const double ang = t * std::pow(double(c_.rope_theta), -2.0 * (i % (rd / 2)) / rd);
            const double rot = i < rd / 2 ? -orig[i + rd / 2] : orig[i - rd / 2];
            e[i] = orig[i] * std::cos(ang) + rot * std::sin(ang);
          }
        }
      }
    };
    rope(q, hq);
    rope(k, hkv);
    Mat o(T * hq * hd, 0.0);
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < hq; ++h) {
        const int kvh = h / (hq / hkv);
        std::vector<double> w(t + 1);
        double mx = -1e300, sum = 0;
        for (int j = 0; j <= t; ++j) {
          double s = 0;
          for (int d = 0; d < hd; ++d) s += q[(t * hq + h) * hd + d] * k[(j * hkv + kvh) * hd + d];
          w[j] = s / std::sqrt(double(hd));
          mx = std::max(mx, w[j]);
        }
        for (double& e : w) sum += (e = std::exp(e - mx));
        for (int j = 0; j <= t; ++j) {
          for (int d = 0; d < hd; ++d) {
            o[(t * hq + h) * hd + d] += w[j] / sum * v[(j * hkv + kvh) * hd + d];
          }
        }
      }
    }
    return Linear(o, T, hq * hd, W(p + "o_proj.weight"), D);
  }

  Mat Mamba(const std::string& p, const Mat& x, int T) const {
    const int D = c_.hidden_size, d = c_.d_inner(), H = c_.mamba_n_heads, P = c_.mamba_d_head;
    const int G = c_.mamba_n_groups, N = c_.mamba_d_state, Wd = c_.mamba_d_conv;
    const int conv = c_.conv_dim(), in = c_.in_proj_dim();
    const Mat proj = Linear(x, T, D, W(p + "in_proj.weight"), in);  // z | xBC | dt
    const Mat cw = W(p + "conv1d.weight"), cb = W(p + "conv1d.bias");
    const Mat a_log = W(p + "A_log"), dskip = W(p + "D"), dt_bias = W(p + "dt_bias");
    Mat xbc(T * conv);
    for (int t = 0; t < T; ++t) {
      for (int ch = 0; ch < conv; ++ch) {
        double s = cb[ch];
        for (int k = 0; k < Wd; ++k) {
          const int src = t - (Wd - 1) + k;  // zero initial state
          if (src >= 0) s += cw[ch * Wd + k] * proj[src * in + d + ch];
        }
        xbc[t * conv + ch] = Silu(s);
      }
    }
    std::vector<double> state(H * P * N, 0.0);
    Mat y(T * d);
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < H; ++h) {
        const int g = h / (H / G);
        const double raw = proj[t * in + d + conv + h] + dt_bias[h];
        const double dt =
            std::clamp(raw > 20 ? raw : std::log1p(std::exp(raw)), double(c_.time_step_min_limit),
                       double(c_.time_step_max_limit));
        const double decay = std::exp(dt * -std::exp(a_log[h]));
        for (int q = 0; q < P; ++q) {
          const double xv = xbc[t * conv + h * P + q];
          double acc = 0;
          for (int n = 0; n < N; ++n) {
            double& s = state[(h * P + q) * N + n];
            s = decay * s + dt * xv * xbc[t * conv + d + g * N + n];
            acc += s * xbc[t * conv + d + G * N + g * N + n];
          }
          y[t * d + h * P + q] = acc + dskip[h] * xv;
        }
      }
    }
    const Mat norm_w = W(p + "norm.weight");
    const int gs = d / G;
    for (int t = 0; t < T; ++t) {
      for (int g = 0; g < G; ++g) {
        double ss = 0;
        for (int i = g * gs; i < (g + 1) * gs; ++i) {
          y[t * d + i] *= Silu(proj[t * in + i]);
          ss += y[t * d + i] * y[t * d + i];
        }
        const double inv = 1.0 / std::sqrt(ss / gs + c_.rms_norm_eps);
        for (int i = g * gs; i < (g + 1) * gs; ++i) y[t * d + i] *= inv * norm_w[i];
      }
    }
    return Linear(y, T, d, W(p + "out_proj.weight"), D);
  }

  const ModelConfig& c_;
  const TensorSource& s_;
};

class ReferenceModelTest : public ::testing::TestWithParam<int> {};

TEST_P(ReferenceModelTest, PrefillLogitsMatchSequentialReference) {
  const ModelConfig config = testing::TinyConfig(GetParam());
  const testing::RandomTensorSource source(config, 12);
  auto runner = testing::TpRunner::Create(config, source, 1, 64, 4, 4).value();
  std::vector<int32_t> ids;
  for (int i = 0; i < 21; ++i) ids.push_back((i * 29 + 5) % config.vocab_size);
  std::vector<int32_t> table(6);
  for (int i = 0; i < 6; ++i) table[i] = 5 - i;
  const auto got = runner
                       ->Forward({{{.token_ids = ids,
                                    .num_computed_tokens = 0,
                                    .block_table = table,
                                    .mamba_slot = 1,
                                    .need_logits = true}}})
                       .value();
  const auto want = Reference(config, source).LastLogits(ids);
  EXPECT_LT(testing::MaxRelError(got, std::vector<float>(want.begin(), want.end())), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Groups, ReferenceModelTest, ::testing::Values(1, 2));

}  // namespace
}  // namespace hc::model
