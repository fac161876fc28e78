// CPU norms, RoPE and element-wise kernels (fp32). The norms and the
// activations (SiluMul, Relu2) are explicit SIMD (simd_tile.h: AVX-512, AVX2
// or portable vectors, picked from CPUID); the rest leaves vectorising the
// inner loops to the compiler. Each splits its
// tokens (rows) over the calling thread's intra-op pool; every row is computed
// by one range exactly as it would be sequentially, so results do not depend
// on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "common/intra_op.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/cpu_kernels_simd.h"
#include "kernels/cpu/simd_tile.h"
#include "kernels/half.h"

namespace hc::kernels {
namespace {

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

// ---- Norms: one row at a time, W lanes ------------------------------------
//
// Sums of squares run in fp32 over 4 x W partial sums in a fixed order (then
// the partial vectors pairwise, then the lanes, then the padded tail vector),
// so a row's value depends on its length and W only, not on the thread count.
// Against an exact (fp64) sum that changes the result by a few fp32 ulp
// (pointwise_test.cc states the tolerance); silu uses simd::Exp (~2 ulp).

using simd::Vf;

// Lambdas returning vectors are inlined like the simd_tile.h helpers (a call
// would pass the vector in the baseline ABI).
#define HC_SIMD_LAMBDA __attribute__((always_inline))

template <int W>
HC_SIMD_INLINE Vf<W> SiluV(Vf<W> z) {
  return z / (1.0f + simd::Exp<W>(-z));
}

// The last n < W elements of x, zero padded to a vector.
template <int W>
HC_SIMD_INLINE Vf<W> LoadTail(const float* x, int n) {
  float buf[W] = {};
  for (int i = 0; i < n; ++i) buf[i] = x[i];
  return simd::Load<W>(buf);
}
template <int W>
HC_SIMD_INLINE void StoreTail(float* out, Vf<W> v, int n) {
  float buf[W];
  simd::Store<W>(buf, v);
  for (int i = 0; i < n; ++i) out[i] = buf[i];
}

// sum_i f(i)^2 over [0, n), where f(i) is a vector of elements i..i+W-1 and
// tail(i) the zero-padded vector of the last n - i < W of them.
template <int W, typename F, typename Tail>
HC_SIMD_INLINE float SumSquares(int n, const F& f, const Tail& tail) {
  Vf<W> acc[4] = {simd::Splat<W>(0.0f), simd::Splat<W>(0.0f), simd::Splat<W>(0.0f),
                  simd::Splat<W>(0.0f)};
  int i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      const Vf<W> v = f(i + u * W);
      acc[u] = acc[u] + v * v;
    }
  }
  for (; i + W <= n; i += W) {
    const Vf<W> v = f(i);
    acc[0] = acc[0] + v * v;
  }
  if (i < n) {
    const Vf<W> v = tail(i);
    acc[1] = acc[1] + v * v;
  }
  return simd::HorizontalSum<W>((acc[0] + acc[1]) + (acc[2] + acc[3]));
}

template <int W>
HC_SIMD_INLINE void RmsNormRowsW(const RmsNormArgs& a, int t0, int t1) {
  const int n = a.dim;
  for (int t = t0; t < t1; ++t) {
    const float* x = a.x.row(t);
    float* out = a.out.row(t);
    const float ss = SumSquares<W>(
        n, [&](int i) HC_SIMD_LAMBDA { return simd::Load<W>(x + i); },
        [&](int i) HC_SIMD_LAMBDA { return LoadTail<W>(x + i, n - i); });
    const float inv = 1.0f / std::sqrt(ss / n + a.eps);
    int i = 0;
    for (; i + W <= n; i += W) {
      simd::Store<W>(out + i, simd::Load<W>(x + i) * inv * simd::Load<W>(a.weight + i));
    }
    if (i < n) {
      StoreTail<W>(out + i, LoadTail<W>(x + i, n - i) * inv * LoadTail<W>(a.weight + i, n - i),
                   n - i);
    }
  }
}

template <int W>
HC_SIMD_INLINE void GatedSumSquaresRowsW(const GatedNormArgs& a, float* sum_sq, int t0, int t1) {
  const int n = a.group_size;
  for (int t = t0; t < t1; ++t) {
    for (int g = 0; g < a.num_groups; ++g) {
      const float* y = a.y.row(t) + static_cast<int64_t>(g) * n;
      const float* z = a.z.row(t) + static_cast<int64_t>(g) * n;
      sum_sq[static_cast<int64_t>(t) * a.num_groups + g] = SumSquares<W>(
          n,
          [&](int i)
              HC_SIMD_LAMBDA { return simd::Load<W>(y + i) * SiluV<W>(simd::Load<W>(z + i)); },
          [&](int i) HC_SIMD_LAMBDA {
            return LoadTail<W>(y + i, n - i) * SiluV<W>(LoadTail<W>(z + i, n - i));
          });
    }
  }
}

template <int W>
HC_SIMD_INLINE void GatedNormApplyRowsW(const GatedNormArgs& a, const float* sum_sq, int t0,
                                        int t1) {
  const int n = a.group_size;
  for (int t = t0; t < t1; ++t) {
    for (int g = 0; g < a.num_groups; ++g) {
      const int64_t off = static_cast<int64_t>(g) * n;
      const float* y = a.y.row(t) + off;
      const float* z = a.z.row(t) + off;
      const float* w = a.weight + off;
      float* out = a.out.row(t) + off;
      const float ms = sum_sq[static_cast<int64_t>(t) * a.num_groups + g] / a.norm_count;
      const float inv = 1.0f / std::sqrt(ms + a.eps);
      int i = 0;
      for (; i + W <= n; i += W) {
        const Vf<W> v = simd::Load<W>(y + i) * SiluV<W>(simd::Load<W>(z + i));
        simd::Store<W>(out + i, v * inv * simd::Load<W>(w + i));
      }
      if (i < n) {
        const int r = n - i;
        const Vf<W> v = LoadTail<W>(y + i, r) * SiluV<W>(LoadTail<W>(z + i, r));
        StoreTail<W>(out + i, v * inv * LoadTail<W>(w + i, r), r);
      }
    }
  }
}

// ---- Activations: one row, W lanes ------------------------------------------
//
// silu(g) * u on simd::Exp, as the gated norm and the conv1d SiLU (~2 ulp from
// the exact silu); the tail as a zero-padded vector, so every element of a row
// goes through the same lane arithmetic whatever its position. (std::exp per
// element, which no compiler vectorizes, was ~1.7% of a batch-8 decode step.)
template <int W>
HC_SIMD_INLINE void SiluMulRowW(const float* g, const float* u, float* o, int n) {
  int i = 0;
  for (; i + W <= n; i += W) {
    simd::Store<W>(o + i, SiluV<W>(simd::Load<W>(g + i)) * simd::Load<W>(u + i));
  }
  if (const int r = n - i; r > 0) {
    StoreTail<W>(o + i, SiluV<W>(LoadTail<W>(g + i, r)) * LoadTail<W>(u + i, r), r);
  }
}

// max(x, 0)^2, exact in any width.
template <int W>
HC_SIMD_INLINE void Relu2RowW(const float* x, float* o, int n) {
  int i = 0;
  for (; i + W <= n; i += W) {
    const Vf<W> v = simd::Load<W>(x + i);
    const Vf<W> r = simd::Max<W>(v, simd::Splat<W>(0.0f));
    simd::Store<W>(o + i, r * r);
  }
  for (; i < n; ++i) {
    const float r = x[i] > 0.0f ? x[i] : 0.0f;
    o[i] = r * r;
  }
}

// The row functions of one instruction set, picked once per kernel object.
struct RowFns {
  void (*rms)(const RmsNormArgs&, int, int);
  void (*gated_sum_squares)(const GatedNormArgs&, float*, int, int);
  void (*gated_apply)(const GatedNormArgs&, const float*, int, int);
  void (*silu_mul)(const float*, const float*, float*, int);
  void (*relu2)(const float*, float*, int);
};

// The row functions at W lanes, in `Target`'s instruction set.
#define HC_ROW_FNS(Target, Name, W)                                                            \
  Target void Rms##Name(const RmsNormArgs& a, int t0, int t1) { RmsNormRowsW<W>(a, t0, t1); }  \
  Target void GatedSs##Name(const GatedNormArgs& a, float* ss, int t0, int t1) {               \
    GatedSumSquaresRowsW<W>(a, ss, t0, t1);                                                    \
  }                                                                                            \
  Target void GatedApply##Name(const GatedNormArgs& a, const float* ss, int t0, int t1) {      \
    GatedNormApplyRowsW<W>(a, ss, t0, t1);                                                     \
  }                                                                                            \
  Target void SiluMul##Name(const float* g, const float* u, float* o, int n) {                 \
    SiluMulRowW<W>(g, u, o, n);                                                                \
  }                                                                                            \
  Target void Relu2##Name(const float* x, float* o, int n) { Relu2RowW<W>(x, o, n); }          \
  constexpr RowFns k##Name##Rows = {Rms##Name, GatedSs##Name, GatedApply##Name, SiluMul##Name, \
                                    Relu2##Name};

#if defined(__x86_64__)
HC_ROW_FNS(HC_TARGET_AVX512, Avx512, 16)
HC_ROW_FNS(HC_TARGET_AVX2, Avx2, 8)
#endif
HC_ROW_FNS(, Portable, 4)
#undef HC_ROW_FNS

RowFns PickRows(simd::SimdWidth width) {
  switch (simd::SimdLanes(width)) {
#if defined(__x86_64__)
    case 16:
      return kAvx512Rows;
    case 8:
      return kAvx2Rows;
#endif
    default:
      return kPortableRows;
  }
}

class CpuNorm final : public NormKernels, Grained {
 public:
  CpuNorm(simd::SimdWidth width, int64_t min_elems) : Grained(min_elems), fns_(PickRows(width)) {}

  void RmsNorm(const RmsNormArgs& a) const override {
    SplitRows(a.num_tokens, a.dim, [&](int t0, int t1) { fns_.rms(a, t0, t1); });
  }

  void GatedSumSquares(const GatedNormArgs& a, float* sum_sq) const override {
    SplitRows(a.num_tokens, static_cast<int64_t>(a.num_groups) * a.group_size,
              [&](int t0, int t1) { fns_.gated_sum_squares(a, sum_sq, t0, t1); });
  }

  void GatedNormApply(const GatedNormArgs& a, const float* sum_sq) const override {
    SplitRows(a.num_tokens, static_cast<int64_t>(a.num_groups) * a.group_size,
              [&](int t0, int t1) { fns_.gated_apply(a, sum_sq, t0, t1); });
  }

 private:
  const RowFns fns_;
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
        fns_.silu_mul(g, g + width, out.row(t), width);
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
      for (int t = t0; t < t1; ++t) fns_.relu2(x.row(t), out.row(t), width);
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

 private:
  const RowFns fns_ = PickRows(simd::SimdWidth::kAuto);
};

}  // namespace

std::unique_ptr<NormKernels> CreateCpuNormKernels(int64_t min_elems) {
  return std::make_unique<CpuNorm>(simd::SimdWidth::kAuto, min_elems);
}
std::unique_ptr<NormKernels> CreateCpuNormKernels(simd::SimdWidth width, int64_t min_elems) {
  return std::make_unique<CpuNorm>(width, min_elems);
}
std::unique_ptr<RopeKernel> CreateCpuRopeKernel(int64_t min_elems) {
  return std::make_unique<CpuRope>(min_elems);
}
std::unique_ptr<ElementwiseKernels> CreateCpuElementwiseKernels(int64_t min_elems) {
  return std::make_unique<CpuElementwise>(min_elems);
}

}  // namespace hc::kernels
