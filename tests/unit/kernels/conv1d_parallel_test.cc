// The conv1d prefill over more channels than one 256-channel block, with
// channel counts that leave vector tails: every sequence of a varlen batch
// (some shorter than the conv history) against a plain convolution over
// (its slot's state ++ its inputs), the states left behind, and the result
// bitwise identical inline and on intra-op pools of 1..4 threads.
#include <cmath>
#include <cstring>
#include <vector>

#include "common/intra_op.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace hc::kernels {
namespace {

using testing::MaxRelError;
using testing::RandomVector;

constexpr int kW = 4, kHist = kW - 1;

struct Batch {
  int C;
  std::vector<int32_t> qsl = {0}, slots;
  std::vector<float> weight, bias, x, init;

  Batch(int channels, const std::vector<int>& lens) : C(channels) {
    for (size_t s = 0; s < lens.size(); ++s) {
      qsl.push_back(qsl.back() + lens[s]);
      slots.push_back(static_cast<int32_t>(lens.size() - 1 - s));
    }
    weight = RandomVector(static_cast<size_t>(C) * kW, 1);
    bias = RandomVector(C, 2);
    x = RandomVector(static_cast<size_t>(qsl.back()) * C, 3, -3.0f, 3.0f);
    init = RandomVector(lens.size() * C * kHist, 4);
  }

  void Run(const Conv1dKernels& k, std::vector<float>* out, std::vector<float>* states) const {
    *states = init;
    out->assign(static_cast<size_t>(qsl.back()) * C, NAN);
    k.CausalConv1dVarlen({.conv_dim = C,
                          .width = kW,
                          .weight = weight.data(),
                          .bias = bias.data(),
                          .apply_silu = true,
                          .state = states->data()},
                         {static_cast<int>(slots.size()), qsl.data()}, slots.data(), {x.data(), C},
                         {out->data(), C});
  }

  // Per sequence: u = state rows ++ inputs; outputs and the last kHist of u.
  void Reference(std::vector<float>* out, std::vector<float>* states) const {
    out->assign(static_cast<size_t>(qsl.back()) * C, 0.0f);
    *states = init;
    for (size_t s = 0; s + 1 < qsl.size(); ++s) {
      const int len = qsl[s + 1] - qsl[s];
      float* st = states->data() + static_cast<size_t>(slots[s]) * C * kHist;
      for (int c = 0; c < C; ++c) {
        std::vector<double> u(st + c * kHist, st + (c + 1) * kHist);
        for (int t = 0; t < len; ++t) u.push_back(x[static_cast<size_t>(qsl[s] + t) * C + c]);
        for (int t = 0; t < len; ++t) {
          double acc = bias[c];
          for (int k = 0; k < kW; ++k) acc += double(weight[c * kW + k]) * u[t + k];
          (*out)[static_cast<size_t>(qsl[s] + t) * C + c] = float(acc / (1.0 + std::exp(-acc)));
        }
        for (int j = 0; j < kHist; ++j) st[c * kHist + j] = static_cast<float>(u[len + j]);
      }
    }
  }
};

TEST(Conv1dParallelTest, ChannelBlocksAndTailsMatchReferenceAndUpdateEachSlot) {
  auto conv = CreateCpuConv1dKernels();
  for (int C : {7, 256, 600}) {
    const Batch batch(C, {1, 2, 5, 0, 40});
    std::vector<float> got, got_states, want, want_states;
    batch.Run(*conv, &got, &got_states);
    batch.Reference(&want, &want_states);
    EXPECT_LT(MaxRelError(got, want), 1e-5) << "C=" << C;
    EXPECT_EQ(got_states, want_states) << "C=" << C;
  }
}

TEST(Conv1dParallelTest, ResultIsBitwiseIdenticalInlineAndOnPoolsOfOneToFourThreads) {
  auto conv = CreateCpuConv1dKernels();
  const Batch batch(1000, {3, 64, 1});
  std::vector<float> out0, states0;
  batch.Run(*conv, &out0, &states0);
  for (int threads = 1; threads <= 4; ++threads) {
    IntraOpPool pool(threads);
    ScopedIntraOpPool bind(&pool);
    std::vector<float> out, states;
    batch.Run(*conv, &out, &states);
    EXPECT_EQ(std::memcmp(out.data(), out0.data(), sizeof(float) * out.size()), 0) << threads;
    EXPECT_EQ(states, states0) << threads;
  }
}

}  // namespace
}  // namespace hc::kernels
