// Causal conv1d: prefill from a nonzero state, single steps and varlen batches
// against a plain convolution over (initial state ++ inputs).
#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace hc::kernels {
namespace {

using testing::MaxRelError;
using testing::RandomVector;

constexpr int kC = 12;
constexpr int kW = 4;
constexpr int kHist = kW - 1;

struct ConvFixture {
  std::vector<float> weight = RandomVector(kC * kW, 61);
  std::vector<float> bias = RandomVector(kC, 62);
};

// u: [kHist + T, kC] token-major (initial state then inputs); returns [T, kC].
std::vector<float> ReferenceConv(const ConvFixture& f, const std::vector<float>& u, int T) {
  std::vector<float> out(T * kC);
  for (int t = 0; t < T; ++t) {
    for (int c = 0; c < kC; ++c) {
      double acc = f.bias[c];
      for (int k = 0; k < kW; ++k) acc += double(f.weight[c * kW + k]) * u[(t + k) * kC + c];
      out[t * kC + c] = float(acc / (1.0 + std::exp(-acc)));
    }
  }
  return out;
}

// The state [kC, kHist] as token-major rows [kHist, kC].
std::vector<float> StateAsRows(const float* state) {
  std::vector<float> rows(kHist * kC);
  for (int c = 0; c < kC; ++c) {
    for (int j = 0; j < kHist; ++j) rows[j * kC + c] = state[c * kHist + j];
  }
  return rows;
}

Conv1dParams Params(const ConvFixture& f, float* state) {
  return {.conv_dim = kC,
          .width = kW,
          .weight = f.weight.data(),
          .bias = f.bias.data(),
          .apply_silu = true,
          .state = state};
}

TEST(Conv1dTest, PrefillFromNonzeroStateMatchesConvOverConcatenationAndUpdatesState) {
  ConvFixture f;
  auto conv = CreateCpuConv1dKernels();
  for (int T : {1, 2, 3, 4, 9}) {
    std::vector<float> states = RandomVector(2 * kC * kHist, 63);  // 2 slots, use slot 1
    const auto init_rows = StateAsRows(states.data() + kC * kHist);
    const auto x = RandomVector(T * kC, 64 + T);
    std::vector<float> u = init_rows;
    u.insert(u.end(), x.begin(), x.end());
    const auto want = ReferenceConv(f, u, T);

    std::vector<float> out(T * kC);
    const std::vector<int32_t> qsl = {0, T}, slots = {1};
    const auto slot0_before = std::vector<float>(states.begin(), states.begin() + kC * kHist);
    conv->CausalConv1dVarlen(Params(f, states.data()), {1, qsl.data()}, slots.data(),
                             {x.data(), kC}, {out.data(), kC});
    EXPECT_LT(MaxRelError(out, want), 1e-6) << "T=" << T;
    const auto new_rows = StateAsRows(states.data() + kC * kHist);
    const std::vector<float> want_state(u.end() - kHist * kC, u.end());
    EXPECT_EQ(new_rows, want_state) << "T=" << T;
    EXPECT_EQ(std::vector<float>(states.begin(), states.begin() + kC * kHist), slot0_before)
        << "another slot was written";
  }
}

TEST(Conv1dTest, PrefillThenStepsEqualsConvOverTheWholeSequence) {
  ConvFixture f;
  auto conv = CreateCpuConv1dKernels();
  const int T = 10, k = 6;
  std::vector<float> state = RandomVector(kC * kHist, 71);
  std::vector<float> u = StateAsRows(state.data());
  const auto x = RandomVector(T * kC, 72);
  u.insert(u.end(), x.begin(), x.end());
  const auto want = ReferenceConv(f, u, T);

  std::vector<float> out(T * kC);
  const std::vector<int32_t> qsl = {0, k}, slot = {0};
  conv->CausalConv1dVarlen(Params(f, state.data()), {1, qsl.data()}, slot.data(), {x.data(), kC},
                           {out.data(), kC});
  for (int t = k; t < T; ++t) {
    conv->CausalConv1dUpdate(Params(f, state.data()), 1, slot.data(), {x.data() + t * kC, kC},
                             {out.data() + t * kC, kC});
  }
  EXPECT_LT(MaxRelError(out, want), 1e-6);
}

TEST(Conv1dTest, VarlenBatchWithDecodeAndEmptySequencesMatchesPerSequenceCalls) {
  ConvFixture f;
  auto conv = CreateCpuConv1dKernels();
  const std::vector<int32_t> qsl = {0, 5, 6, 6, 8}, slots = {2, 0, 3, 1};
  const int T = qsl.back();
  const auto x = RandomVector(T * kC, 81);
  const auto init = RandomVector(4 * kC * kHist, 82);
  auto batched = init;
  std::vector<float> out(T * kC);
  conv->CausalConv1dVarlen(Params(f, batched.data()), {4, qsl.data()}, slots.data(), {x.data(), kC},
                           {out.data(), kC});
  auto single = init;
  std::vector<float> out_single(T * kC);
  for (int s = 0; s < 4; ++s) {
    const std::vector<int32_t> one = {0, qsl[s + 1] - qsl[s]};
    conv->CausalConv1dVarlen(Params(f, single.data()), {1, one.data()}, &slots[s],
                             {x.data() + qsl[s] * kC, kC}, {out_single.data() + qsl[s] * kC, kC});
  }
  EXPECT_EQ(out, out_single);
  EXPECT_EQ(batched, single);
}

TEST(Conv1dTest, BatchedUpdateGivesTheBitsOfASingleTokenPrefill) {
  ConvFixture f;
  auto conv = CreateCpuConv1dKernels();
  const std::vector<int32_t> slots = {1, 0};
  const auto x = RandomVector(2 * kC, 91);
  const auto init = RandomVector(2 * kC * kHist, 92);
  auto a = init, b = init;
  std::vector<float> out_a(2 * kC), out_b(2 * kC);
  conv->CausalConv1dUpdate(Params(f, a.data()), 2, slots.data(), {x.data(), kC},
                           {out_a.data(), kC});
  const std::vector<int32_t> qsl = {0, 1, 2};
  conv->CausalConv1dVarlen(Params(f, b.data()), {2, qsl.data()}, slots.data(), {x.data(), kC},
                           {out_b.data(), kC});
  // Bitwise: a decode step computes what a prefill of the same token does.
  EXPECT_EQ(out_a, out_b);
  EXPECT_EQ(a, b);
}

// As above at real channel counts (whole 16-channel vectors and a tail, the
// width-4 AVX-512 update's range; widths 2 and 3 take the per-channel loop),
// with and without bias and SiLU, three
// sequences in permuted slots over several steps: every output and state bit
// equals a one-token prefill's.
TEST(Conv1dTest, BatchedUpdateGivesThePrefillBitsAtRealChannelCounts) {
  auto conv = CreateCpuConv1dKernels();
  for (const int width : {2, 3, kW}) {  // widths other than 4 take the per-channel path
    for (const int channels : {16, 40, 1664}) {
      for (const bool with_bias : {true, false}) {
        SCOPED_TRACE(::testing::Message()
                     << "W=" << width << " C=" << channels << " bias=" << with_bias);
        const int hist = width - 1;
        const auto weight = RandomVector(static_cast<size_t>(channels) * width, 71);
        const auto bias = RandomVector(channels, 72);
        const std::vector<int32_t> slots = {2, 0, 3};
        const int n = static_cast<int>(slots.size());
        auto a = RandomVector(4 * static_cast<size_t>(channels) * hist, 73), b = a;
        const std::vector<int32_t> qsl = {0, 1, 2, 3};
        for (int step = 0; step < 4; ++step) {
          const auto x = RandomVector(static_cast<size_t>(n) * channels, 80 + step);
          std::vector<float> out_a(x.size()), out_b(x.size());
          Conv1dParams p{.conv_dim = channels,
                         .width = width,
                         .weight = weight.data(),
                         .bias = with_bias ? bias.data() : nullptr,
                         .apply_silu = with_bias};
          p.state = a.data();
          conv->CausalConv1dUpdate(p, n, slots.data(), {x.data(), channels},
                                   {out_a.data(), channels});
          p.state = b.data();
          conv->CausalConv1dVarlen(p, {n, qsl.data()}, slots.data(), {x.data(), channels},
                                   {out_b.data(), channels});
          ASSERT_EQ(out_a, out_b) << "step " << step;
          ASSERT_EQ(a, b) << "step " << step;
        }
      }
    }
  }
}

}  // namespace
}  // namespace hc::kernels
