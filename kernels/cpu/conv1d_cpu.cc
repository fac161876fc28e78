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

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

// The weight [C, W] transposed to [W, C] (wt[k * C + c] = weight[c, k]), so
// that a vector of channels loads contiguously.
std::vector<float> TransposedWeight(const Conv1dParams& p) {
  const int C = p.conv_dim;
  std::vector<float> wt(static_cast<size_t>(p.width) * C);
  for (int c = 0; c < C; ++c) {
    for (int k = 0; k < p.width; ++k)
      wt[static_cast<size_t>(k) * C + c] = p.weight[c * p.width + k];
  }
  return wt;
}

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

// One decode token of one sequence: out[c] for channels [c0, C) (those before
// c0 are already in o and shifted in the state), then SiLU over the whole row;
// the state shifts by one. Bitwise a one-token prefill (ConvChannels): the products run
// per channel in the same order (bias, then w_k u_k for k = 0..W-1), compiled
// in the same ISA wrapper, so both contract to the same FMAs; SiLU runs over
// the row on simd::Exp, lanes as there (lane 0 of a splat for the tail).
// Scalar products read the weight ([C, W]) and the state ([C, W-1]) in place
// instead of gathering them into lanes.
template <int W>
HC_SIMD_INLINE void ConvUpdateRow(const Conv1dParams& p, float* state, const float* xs, float* o,
                                  int c0 = 0) {
  const int C = p.conv_dim, hist = p.width - 1;
  for (int c = c0; c < C; ++c) {
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

// wt: TransposedWeight(p) where the path reads it (UpdatePath), else empty.
using UpdateFn = void (*)(const Conv1dParams&, const float* wt, float*, const float*, float*);

#if defined(__x86_64__)
// Width 4 (every released hybrid checkpoint's d_conv), 16 channels at a time:
// the state block of 16 channels is 48 contiguous floats [c][3], split into
// its three taps with two-source permutes, the products as ConvUpdateRow's
// per-channel chain (bias, then fmadd over taps 0..3: the same FMAs, so the
// same bits), and the shifted state written back as 48 floats (taps 1, 2 of
// the old state and the new input). The scalar row loop this replaces was
// ~2.5% of a batch-8 decode step and 1.8 us per sequence and layer.
// wt: the weight transposed, [4, C]. Returns the first channel not done.
HC_TARGET_AVX512 int UpdateWidth4Avx512(const Conv1dParams& p, const float* wt, float* state,
                                        const float* x, float* o) {
  const int C = p.conv_dim;
  // Tap k of lane i is float 3i + k of the block: from v0|v1 when below 32,
  // else from v2.
  __m512i lo[3], hi[3], shift[3], xsel[3];
  __mmask16 xmask[3] = {0, 0, 0};
  alignas(64) int32_t idx[4][16];
  for (int k = 0; k < 3; ++k) {
    for (int i = 0; i < 16; ++i) {
      const int f = 3 * i + k;
      idx[0][i] = f < 32 ? f : 0;
      idx[1][i] = f < 32 ? i : 16 + f - 32;
      idx[2][i] = i + 1;  // new float 16k + i is old float 16k + i + 1 ...
      const int q = 16 * k + i;
      idx[3][i] = q / 3;  // ... or input q / 3 where q % 3 == 2
      if (q % 3 == 2) xmask[k] = static_cast<__mmask16>(xmask[k] | (1u << i));
    }
    lo[k] = _mm512_load_si512(idx[0]);
    hi[k] = _mm512_load_si512(idx[1]);
    shift[k] = _mm512_load_si512(idx[2]);
    xsel[k] = _mm512_load_si512(idx[3]);
  }
  int c = 0;
  for (; c + 16 <= C; c += 16) {
    float* blk = state + static_cast<int64_t>(c) * 3;
    const __m512 v0 = _mm512_loadu_ps(blk), v1 = _mm512_loadu_ps(blk + 16),
                 v2 = _mm512_loadu_ps(blk + 32);
    const __m512 xv = _mm512_loadu_ps(x + c);
    __m512 acc = p.bias != nullptr ? _mm512_loadu_ps(p.bias + c) : _mm512_setzero_ps();
    for (int k = 0; k < 3; ++k) {
      const __m512 tap = _mm512_permutex2var_ps(_mm512_permutex2var_ps(v0, lo[k], v1), hi[k], v2);
      acc = _mm512_fmadd_ps(_mm512_loadu_ps(wt + static_cast<int64_t>(k) * C + c), tap, acc);
    }
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(wt + 3 * static_cast<int64_t>(C) + c), xv, acc);
    _mm512_storeu_ps(o + c, acc);
    const __m512 n0 = _mm512_permutex2var_ps(v0, shift[0], v1);
    const __m512 n1 = _mm512_permutex2var_ps(v1, shift[1], v2);
    const __m512 n2 = _mm512_permutex2var_ps(v2, shift[2], v2);  // lane 15 (input) replaced
    _mm512_storeu_ps(blk, _mm512_mask_permutexvar_ps(n0, xmask[0], xsel[0], xv));
    _mm512_storeu_ps(blk + 16, _mm512_mask_permutexvar_ps(n1, xmask[1], xsel[1], xv));
    _mm512_storeu_ps(blk + 32, _mm512_mask_permutexvar_ps(n2, xmask[2], xsel[2], xv));
  }
  return c;
}

HC_TARGET_AVX512 void UpdateAvx512(const Conv1dParams& p, const float* wt, float* st,
                                   const float* x, float* o) {
  const int c0 = p.width == 4 ? UpdateWidth4Avx512(p, wt, st, x, o) : 0;
  ConvUpdateRow<16>(p, st, x, o, c0);
}
HC_TARGET_AVX2 void UpdateAvx2(const Conv1dParams& p, const float*, float* st, const float* x,
                               float* o) {
  ConvUpdateRow<8>(p, st, x, o);
}
#endif
void UpdatePortable(const Conv1dParams& p, const float*, float* st, const float* x, float* o) {
  ConvUpdateRow<4>(p, st, x, o);
}

// The decode update of this CPU's instruction set.
struct UpdatePath {
  UpdateFn fn;
  bool width4_reads_transposed;  // fn reads wt when the width is 4
  bool reads_transposed_weight(const Conv1dParams& p) const {
    return width4_reads_transposed && p.width == 4;
  }
};

UpdatePath PickUpdate() {
  switch (simd::SimdLanes(simd::SimdWidth::kAuto)) {
#if defined(__x86_64__)
    case 16:
      return {UpdateAvx512, true};
    case 8:
      return {UpdateAvx2, false};
#endif
    default:
      return {UpdatePortable, false};
  }
}

class CpuConv1d final : public Conv1dKernels {
 public:
  void CausalConv1dVarlen(const Conv1dParams& p, const VarlenBatch& batch, const int32_t* slots,
                          ConstRows x, Rows out) const override {
    const int C = p.conv_dim, hist = p.width - 1;
    const std::vector<float> wt = TransposedWeight(p);
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
    const int C = p.conv_dim, hist = p.width - 1;
    // Only the width-4 AVX-512 update reads the transposed weight.
    const std::vector<float> wt =
        update_.reads_transposed_weight(p) ? TransposedWeight(p) : std::vector<float>();
    for (int b = 0; b < batch_size; ++b) {
      update_.fn(p, wt.data(), p.state + static_cast<int64_t>(slots[b]) * C * hist, x.row(b),
                 out.row(b));
    }
  }

 private:
  const ConvFn conv_fn_ = PickConv();
  const UpdatePath update_ = PickUpdate();
};

}  // namespace

std::unique_ptr<Conv1dKernels> CreateCpuConv1dKernels() { return std::make_unique<CpuConv1d>(); }

}  // namespace hc::kernels
