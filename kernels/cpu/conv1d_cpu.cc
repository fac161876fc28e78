// CPU causal depthwise conv1d (see kernels/conv1d.h for the contract).
//
// Prefill: per sequence, channels are cut into blocks of kChannelBlock run in
// parallel (hc::ParallelFor); inside a block every token's outputs are one
// vector loop over channels (weights transposed to [W, C] per call so the
// loads are contiguous), with SiLU on the vectorized exp (simd::Exp). Each
// output element is the same chain bias + w0 u0 + w1 u1 + ... whatever the
// split, so threads change no bit.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "common/intra_op.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/simd_tile.h"

namespace hc::kernels {
namespace {

using simd::Vf;

constexpr int kChannelBlock = 256;  // a multiple of every W

struct ConvCall {
  const Conv1dParams* p;
  ConstRows x;
  Rows out;
  const float* wt;  // [W, C]: wt[k * C + c] = weight[c, k]
  const float* state;
  int begin;
  int len;
};

// Outputs of tokens [0, len) for channels [c0, c1). Token t's input k is
// u(t + k): the old state for t + k < W - 1, else new token t + k - (W - 1).
template <int W>
HC_SIMD_INLINE void ConvChannels(const ConvCall& call, int c0, int c1) {
  const Conv1dParams& p = *call.p;
  const int C = p.conv_dim, hist = p.width - 1;
  for (int t = 0; t < call.len; ++t) {
    float* o = call.out.row(call.begin + t);
    int c = c0;
    for (; c + W <= c1; c += W) {
      Vf<W> acc = p.bias != nullptr ? simd::Load<W>(p.bias + c) : simd::Splat<W>(0.0f);
      for (int k = 0; k < p.width; ++k) {
        const int j = t + k;  // index into state ++ x
        Vf<W> u;
        if (j < hist) {
          for (int i = 0; i < W; ++i) u[i] = call.state[static_cast<int64_t>(c + i) * hist + j];
        } else {
          u = simd::Load<W>(call.x.row(call.begin + j - hist) + c);
        }
        acc = acc + simd::Load<W>(call.wt + static_cast<int64_t>(k) * C + c) * u;
      }
      if (p.apply_silu) acc = acc / (1.0f + simd::Exp<W>(-acc));
      simd::Store<W>(o + c, acc);
    }
    for (; c < c1; ++c) {
      float acc = p.bias != nullptr ? p.bias[c] : 0.0f;
      for (int k = 0; k < p.width; ++k) {
        const int j = t + k;
        const float u = j < hist ? call.state[static_cast<int64_t>(c) * hist + j]
                                 : call.x.row(call.begin + j - hist)[c];
        acc = acc + call.wt[static_cast<int64_t>(k) * C + c] * u;
      }
      if (p.apply_silu) {
        Vf<W> v = simd::Splat<W>(acc);
        v = v / (1.0f + simd::Exp<W>(-v));
        acc = v[0];
      }
      o[c] = acc;
    }
  }
}

using ConvFn = void (*)(const ConvCall&, int, int);

#if defined(__x86_64__)
HC_TARGET_AVX512 void ConvAvx512(const ConvCall& call, int c0, int c1) {
  ConvChannels<16>(call, c0, c1);
}
HC_TARGET_AVX2 void ConvAvx2(const ConvCall& call, int c0, int c1) {
  ConvChannels<8>(call, c0, c1);
}
#endif
void ConvPortable(const ConvCall& call, int c0, int c1) { ConvChannels<4>(call, c0, c1); }

ConvFn PickConv() {
  switch (simd::SimdLanes(simd::SimdWidth::kAuto)) {
#if defined(__x86_64__)
    case 16:
      return ConvAvx512;
    case 8:
      return ConvAvx2;
#endif
    default:
      return ConvPortable;
  }
}

// One decode token of one sequence: out[c] for every channel, then the state
// shifts by one. Bitwise a one-token prefill (ConvChannels): the products run
// per channel in the same order (bias, then w_k u_k for k = 0..W-1), compiled
// in the same ISA wrapper, so both contract to the same FMAs; SiLU runs over
// the row on simd::Exp, lanes as there (lane 0 of a splat for the tail).
// Scalar products read the weight ([C, W]) and the state ([C, W-1]) in place
// instead of gathering them into lanes.
template <int W>
HC_SIMD_INLINE void ConvUpdateRow(const Conv1dParams& p, float* state, const float* xs, float* o) {
  const int C = p.conv_dim, hist = p.width - 1;
  for (int c = 0; c < C; ++c) {
    const float* w = p.weight + static_cast<int64_t>(c) * p.width;
    float* st = state + static_cast<int64_t>(c) * hist;
    float acc = p.bias != nullptr ? p.bias[c] : 0.0f;
    for (int k = 0; k < hist; ++k) acc = acc + w[k] * st[k];
    acc = acc + w[hist] * xs[c];
    for (int k = 0; k + 1 < hist; ++k) st[k] = st[k + 1];
    if (hist > 0) st[hist - 1] = xs[c];
    o[c] = acc;
  }
  if (!p.apply_silu) return;
  int c = 0;
  for (; c + W <= C; c += W) {
    const Vf<W> v = simd::Load<W>(o + c);
    simd::Store<W>(o + c, v / (1.0f + simd::Exp<W>(-v)));
  }
  for (; c < C; ++c) {
    Vf<W> v = simd::Splat<W>(o[c]);
    v = v / (1.0f + simd::Exp<W>(-v));
    o[c] = v[0];
  }
}

using UpdateFn = void (*)(const Conv1dParams&, float*, const float*, float*);

#if defined(__x86_64__)
HC_TARGET_AVX512 void UpdateAvx512(const Conv1dParams& p, float* st, const float* x, float* o) {
  ConvUpdateRow<16>(p, st, x, o);
}
HC_TARGET_AVX2 void UpdateAvx2(const Conv1dParams& p, float* st, const float* x, float* o) {
  ConvUpdateRow<8>(p, st, x, o);
}
#endif
void UpdatePortable(const Conv1dParams& p, float* st, const float* x, float* o) {
  ConvUpdateRow<4>(p, st, x, o);
}

UpdateFn PickUpdate() {
  switch (simd::SimdLanes(simd::SimdWidth::kAuto)) {
#if defined(__x86_64__)
    case 16:
      return UpdateAvx512;
    case 8:
      return UpdateAvx2;
#endif
    default:
      return UpdatePortable;
  }
}

class CpuConv1d final : public Conv1dKernels {
 public:
  void CausalConv1dVarlen(const Conv1dParams& p, const VarlenBatch& batch, const int32_t* slots,
                          ConstRows x, Rows out) const override {
    const int C = p.conv_dim, hist = p.width - 1;
    std::vector<float> wt(static_cast<size_t>(p.width) * C);
    for (int c = 0; c < C; ++c) {
      for (int k = 0; k < p.width; ++k)
        wt[static_cast<size_t>(k) * C + c] = p.weight[c * p.width + k];
    }
    const ConvFn fn = conv_fn_;
    const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
    for (int s = 0; s < batch.num_seqs; ++s) {
      const int begin = batch.query_start_loc[s];
      const int len = batch.query_start_loc[s + 1] - begin;
      if (len <= 0) continue;
      float* state = p.state + static_cast<int64_t>(slots[s]) * C * hist;
      const ConvCall call{&p, x, out, wt.data(), state, begin, len};
      ParallelFor(blocks, 1, [&](int64_t lo, int64_t hi) {
        const int c0 = static_cast<int>(lo * kChannelBlock);
        const int c1 = static_cast<int>(std::min<int64_t>(C, hi * kChannelBlock));
        fn(call, c0, c1);
        // The last `hist` inputs of state ++ x, for these channels (read above
        // by these channels only).
        std::vector<float> tail(static_cast<size_t>(hist));
        for (int c = c0; c < c1; ++c) {
          float* st = state + static_cast<int64_t>(c) * hist;
          for (int j = 0; j < hist; ++j) {
            const int idx = len + j;
            tail[j] = idx < hist ? st[idx] : x.row(begin + idx - hist)[c];
          }
          std::copy(tail.begin(), tail.end(), st);
        }
      });
    }
  }

  // One token per sequence, bitwise a one-token prefill (ConvUpdateRow).
  // (The varlen path with unit lengths gave the same bits, but its
  // per-sequence weight transpose, state copies and parallel dispatch made the
  // update ~1.8x slower at batch 8.)
  void CausalConv1dUpdate(const Conv1dParams& p, int batch_size, const int32_t* slots, ConstRows x,
                          Rows out) const override {
    const int hist = p.width - 1;
    for (int b = 0; b < batch_size; ++b) {
      update_fn_(p, p.state + static_cast<int64_t>(slots[b]) * p.conv_dim * hist, x.row(b),
                 out.row(b));
    }
  }

 private:
  const ConvFn conv_fn_ = PickConv();
  const UpdateFn update_fn_ = PickUpdate();
};

}  // namespace

std::unique_ptr<Conv1dKernels> CreateCpuConv1dKernels() { return std::make_unique<CpuConv1d>(); }

}  // namespace hc::kernels
