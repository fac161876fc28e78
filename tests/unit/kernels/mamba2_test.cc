// Mamba2 SSD kernels against the per-token recurrence written out here.
#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace hc::kernels {
namespace {

using testing::MaxRelError;
using testing::RandomVector;

struct SsmProblem {
  int H = 4, P = 8, N = 16, G = 2;
  int T = 0;
  std::vector<float> x, dt, b, c, a_log, d, dt_bias;
  float dt_min = 0.0f, dt_max = INFINITY;

  SsmProblem(int tokens, uint32_t seed, int groups = 2) : G(groups), T(tokens) {
    x = RandomVector(T * H * P, seed);
    dt = RandomVector(T * H, seed + 1, -3.0f, 1.0f);
    b = RandomVector(T * G * N, seed + 2);
    c = RandomVector(T * G * N, seed + 3);
    a_log = RandomVector(H, seed + 4, -1.0f, 1.5f);
    d = RandomVector(H, seed + 5);
    dt_bias = RandomVector(H, seed + 6, -1.0f, 1.0f);
  }

  SsmParams Params(float* state, int chunk) const {
    return {.num_heads = H,
            .head_dim = P,
            .state_size = N,
            .num_groups = G,
            .a_log = a_log.data(),
            .d = d.data(),
            .dt_bias = dt_bias.data(),
            .dt_min = dt_min,
            .dt_max = dt_max,
            .chunk_size = chunk,
            .state = state};
  }
  // Tensors for rows [t0, ...).
  SsmTensors Io(float* y, int t0 = 0) const {
    return {.x = {x.data() + t0 * H * P, H * P},
            .dt = {dt.data() + t0 * H, H},
            .b = {b.data() + t0 * G * N, G * N},
            .c = {c.data() + t0 * G * N, G * N},
            .y = {y + t0 * H * P, H * P}};
  }

  // The per-token recurrence in double; `state` [H, P, N] is updated.
  std::vector<float> Reference(std::vector<double>& state) const {
    std::vector<float> y(T * H * P);
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < H; ++h) {
        const int g = h / (H / G);
        const double raw = double(dt[t * H + h]) + dt_bias[h];
        const double sp = raw > 20.0 ? raw : std::log1p(std::exp(raw));
        const double delta = std::clamp(sp, double(dt_min), double(dt_max));
        const double decay = std::exp(delta * -std::exp(double(a_log[h])));
        for (int p = 0; p < P; ++p) {
          const double xv = x[(t * H + h) * P + p];
          double acc = 0.0;
          for (int n = 0; n < N; ++n) {
            double& s = state[(h * P + p) * N + n];
            s = decay * s + delta * xv * b[(t * G + g) * N + n];
            acc += s * c[(t * G + g) * N + n];
          }
          y[(t * H + h) * P + p] = float(acc + d[h] * xv);
        }
      }
    }
    return y;
  }
};

std::vector<float> ToFloat(const std::vector<double>& v) { return {v.begin(), v.end()}; }

TEST(Mamba2Test, ChunkedScanFromNonzeroStateMatchesRecurrence) {
  auto k = CreateCpuMamba2Kernels();
  for (int T : {1, 3, 4, 5, 16, 37}) {
    for (int chunk : {1, 4, 7, 64}) {
      SsmProblem pr(T, 100 + T);
      const auto init = RandomVector(pr.H * pr.P * pr.N, 7);
      std::vector<double> ref_state(init.begin(), init.end());
      const auto want = pr.Reference(ref_state);
      auto state = init;
      std::vector<float> y(T * pr.H * pr.P);
      const std::vector<int32_t> qsl = {0, T}, slot = {0};
      k->SsdChunkScanVarlen(pr.Params(state.data(), chunk), {1, qsl.data()}, slot.data(),
                            pr.Io(y.data()));
      EXPECT_LT(MaxRelError(y, want), 1e-4) << "T=" << T << " chunk=" << chunk;
      EXPECT_LT(MaxRelError(state, ToFloat(ref_state)), 1e-4) << "T=" << T << " chunk=" << chunk;
    }
  }
}

TEST(Mamba2Test, ContinuationFromReturnedStateMatchesOneScanForEverySplit) {
  // Split points inside and across chunk boundaries (chunk 8, 29 tokens).
  auto k = CreateCpuMamba2Kernels();
  const int T = 29, chunk = 8;
  SsmProblem pr(T, 300, /*groups=*/1);
  std::vector<double> ref_state(pr.H * pr.P * pr.N, 0.0);
  const auto want = pr.Reference(ref_state);
  for (int split = 1; split < T; ++split) {
    std::vector<float> state(pr.H * pr.P * pr.N, 0.0f);
    std::vector<float> y(T * pr.H * pr.P);
    const std::vector<int32_t> first = {0, split}, rest = {0, T - split}, slot = {0};
    k->SsdChunkScanVarlen(pr.Params(state.data(), chunk), {1, first.data()}, slot.data(),
                          pr.Io(y.data()));
    k->SsdChunkScanVarlen(pr.Params(state.data(), chunk), {1, rest.data()}, slot.data(),
                          pr.Io(y.data(), split));
    EXPECT_LT(MaxRelError(y, want), 1e-4) << "split=" << split;
    EXPECT_LT(MaxRelError(state, ToFloat(ref_state)), 1e-4) << "split=" << split;
  }
}

TEST(Mamba2Test, SelectiveStateUpdateStepsMatchRecurrence) {
  auto k = CreateCpuMamba2Kernels();
  const int T = 12;
  SsmProblem pr(T, 400);
  const auto init = RandomVector(pr.H * pr.P * pr.N, 8);
  std::vector<double> ref_state(init.begin(), init.end());
  const auto want = pr.Reference(ref_state);
  auto state = init;
  std::vector<float> y(T * pr.H * pr.P);
  const int32_t slot = 0;
  for (int t = 0; t < T; ++t) {
    k->SelectiveStateUpdate(pr.Params(state.data(), 4), 1, &slot, pr.Io(y.data(), t));
  }
  EXPECT_LT(MaxRelError(y, want), 1e-4);
  EXPECT_LT(MaxRelError(state, ToFloat(ref_state)), 1e-4);
}

TEST(Mamba2Test, DtClampIsApplied) {
  auto k = CreateCpuMamba2Kernels();
  const int T = 9;
  SsmProblem pr(T, 500);
  pr.dt_min = 0.3f;
  pr.dt_max = 0.6f;
  std::vector<double> ref_state(pr.H * pr.P * pr.N, 0.0);
  const auto want = pr.Reference(ref_state);
  std::vector<float> state(pr.H * pr.P * pr.N, 0.0f), y(T * pr.H * pr.P);
  const std::vector<int32_t> qsl = {0, T}, slot = {0};
  k->SsdChunkScanVarlen(pr.Params(state.data(), 4), {1, qsl.data()}, slot.data(), pr.Io(y.data()));
  EXPECT_LT(MaxRelError(y, want), 1e-4);
  // Without the clamp the result differs, so the clamp is observable here.
  pr.dt_min = 0.0f;
  pr.dt_max = INFINITY;
  std::vector<double> unclamped(pr.H * pr.P * pr.N, 0.0);
  EXPECT_GT(MaxRelError(pr.Reference(unclamped), want), 1e-3);
}

TEST(Mamba2Test, VarlenBatchUsesEachSequencesSlot) {
  auto k = CreateCpuMamba2Kernels();
  const std::vector<int32_t> qsl = {0, 7, 8, 8, 20}, slots = {3, 0, 2, 1};
  const int T = qsl.back();
  SsmProblem pr(T, 600);
  const int slot_elems = pr.H * pr.P * pr.N;
  const auto init = RandomVector(4 * slot_elems, 9);
  auto state = init;
  std::vector<float> y(T * pr.H * pr.P);
  k->SsdChunkScanVarlen(pr.Params(state.data(), 4), {4, qsl.data()}, slots.data(), pr.Io(y.data()));
  for (int s = 0; s < 4; ++s) {
    const int len = qsl[s + 1] - qsl[s];
    std::vector<double> ref(init.begin() + slots[s] * slot_elems,
                            init.begin() + (slots[s] + 1) * slot_elems);
    // Reference over this sequence's rows only.
    SsmProblem one = pr;
    one.T = len;
    one.x.assign(pr.x.begin() + qsl[s] * pr.H * pr.P, pr.x.begin() + qsl[s + 1] * pr.H * pr.P);
    one.dt.assign(pr.dt.begin() + qsl[s] * pr.H, pr.dt.begin() + qsl[s + 1] * pr.H);
    one.b.assign(pr.b.begin() + qsl[s] * pr.G * pr.N, pr.b.begin() + qsl[s + 1] * pr.G * pr.N);
    one.c.assign(pr.c.begin() + qsl[s] * pr.G * pr.N, pr.c.begin() + qsl[s + 1] * pr.G * pr.N);
    const auto want = one.Reference(ref);
    const std::vector<float> got(y.begin() + qsl[s] * pr.H * pr.P,
                                 y.begin() + qsl[s + 1] * pr.H * pr.P);
    EXPECT_LT(MaxRelError(got, want), 1e-4) << "seq " << s;
    const std::vector<float> got_state(state.begin() + slots[s] * slot_elems,
                                       state.begin() + (slots[s] + 1) * slot_elems);
    EXPECT_LT(MaxRelError(got_state, ToFloat(ref)), 1e-4) << "seq " << s;
  }
}

}  // namespace
}  // namespace hc::kernels
