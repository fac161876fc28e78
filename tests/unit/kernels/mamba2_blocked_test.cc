// The blocked SSD scan at its block edges, for every instruction set this CPU
// runs: chunk sizes and lengths around the 16-row blocks of the causal
// products and the vector widths, head_dim / state sizes with column tails,
// several sequences from nonzero states in one batch; and the scan and the
// single-step update bitwise identical inline and on pools of 1..4 threads.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common/intra_op.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels_simd.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace hc::kernels {
namespace {

using simd::SimdWidth;
using testing::MaxRelError;
using testing::RandomVector;

const SimdWidth kWidths[] = {SimdWidth::kPortable, SimdWidth::kAvx2, SimdWidth::kAvx512};

std::string Name(SimdWidth w) { return "lanes=" + std::to_string(simd::SimdLanes(w)); }

// A varlen batch: sequence s has lens[s] tokens and starts from slot
// slots[s]'s (random) state.
struct Batch {
  int H, P, N, G;
  std::vector<int32_t> qsl = {0}, slots;
  std::vector<float> x, dt, b, c, a_log, d, dt_bias, init;

  Batch(int h, int p, int n, int g, const std::vector<int>& lens) : H(h), P(p), N(n), G(g) {
    for (size_t s = 0; s < lens.size(); ++s) {
      qsl.push_back(qsl.back() + lens[s]);
      slots.push_back(static_cast<int32_t>(lens.size() - 1 - s));  // reversed: slot != index
    }
    const int T = qsl.back();
    x = RandomVector(static_cast<size_t>(T) * H * P, 1);
    dt = RandomVector(static_cast<size_t>(T) * H, 2, -3.0f, 1.0f);
    b = RandomVector(static_cast<size_t>(T) * G * N, 3);
    c = RandomVector(static_cast<size_t>(T) * G * N, 4);
    a_log = RandomVector(H, 5, -1.0f, 1.5f);
    d = RandomVector(H, 6);
    dt_bias = RandomVector(H, 7, -1.0f, 1.0f);
    init = RandomVector(lens.size() * H * P * N, 8);
  }
  SsmParams Params(float* state, int chunk) const {
    return {.num_heads = H,
            .head_dim = P,
            .state_size = N,
            .num_groups = G,
            .a_log = a_log.data(),
            .d = d.data(),
            .dt_bias = dt_bias.data(),
            .chunk_size = chunk,
            .state = state};
  }
  SsmTensors Io(float* y, int t0 = 0) const {
    return {.x = {x.data() + static_cast<size_t>(t0) * H * P, H * P},
            .dt = {dt.data() + static_cast<size_t>(t0) * H, H},
            .b = {b.data() + static_cast<size_t>(t0) * G * N, G * N},
            .c = {c.data() + static_cast<size_t>(t0) * G * N, G * N},
            .y = {y + static_cast<size_t>(t0) * H * P, H * P}};
  }

  // The per-token recurrence in double: y and the final states.
  void Reference(std::vector<float>* y, std::vector<float>* states) const {
    const int T = qsl.back();
    y->assign(static_cast<size_t>(T) * H * P, 0.0f);
    std::vector<double> st(init.begin(), init.end());
    const size_t slot_elems = static_cast<size_t>(H) * P * N;
    for (size_t s = 0; s + 1 < qsl.size(); ++s) {
      double* state = st.data() + slots[s] * slot_elems;
      for (int t = qsl[s]; t < qsl[s + 1]; ++t) {
        for (int h = 0; h < H; ++h) {
          const int g = h / (H / G);
          const double raw = double(dt[t * H + h]) + dt_bias[h];
          const double delta = raw > 20.0 ? raw : std::log1p(std::exp(raw));
          const double decay = std::exp(delta * -std::exp(double(a_log[h])));
          for (int p = 0; p < P; ++p) {
            const double xv = x[(static_cast<size_t>(t) * H + h) * P + p];
            double acc = 0.0;
            for (int n = 0; n < N; ++n) {
              double& sv = state[(static_cast<size_t>(h) * P + p) * N + n];
              sv = decay * sv + delta * xv * b[(static_cast<size_t>(t) * G + g) * N + n];
              acc += sv * c[(static_cast<size_t>(t) * G + g) * N + n];
            }
            (*y)[(static_cast<size_t>(t) * H + h) * P + p] = float(acc + d[h] * xv);
          }
        }
      }
    }
    states->assign(st.begin(), st.end());
  }

  void Scan(const Mamba2Kernels& k, int chunk, std::vector<float>* y,
            std::vector<float>* states) const {
    *states = init;
    y->assign(static_cast<size_t>(qsl.back()) * H * P, NAN);
    k.SsdChunkScanVarlen(Params(states->data(), chunk),
                         {static_cast<int>(slots.size()), qsl.data()}, slots.data(), Io(y->data()));
  }
};

TEST(BlockedSsdTest, ChunkAndRowBlockEdgesMatchRecurrenceForEveryIsa) {
  // Lengths around the 16-row blocks and the chunk; P = 24 and N = 20 leave
  // column tails for every vector width.
  const Batch batch(4, 24, 20, 2, {1, 15, 16, 17, 33, 0, 70});
  std::vector<float> want_y, want_states;
  batch.Reference(&want_y, &want_states);
  for (int chunk : {7, 16, 17, 32, 64}) {
    for (SimdWidth w : kWidths) {
      std::vector<float> y, states;
      batch.Scan(*CreateCpuMamba2Kernels(w), chunk, &y, &states);
      EXPECT_LT(MaxRelError(y, want_y), 1e-4) << Name(w) << " chunk=" << chunk;
      EXPECT_LT(MaxRelError(states, want_states), 1e-4) << Name(w) << " chunk=" << chunk;
    }
  }
}

TEST(BlockedSsdTest, ScanIsBitwiseIdenticalInlineAndOnPoolsOfOneToFourThreads) {
  const Batch batch(8, 64, 64, 1, {300, 5, 129});
  for (SimdWidth w : kWidths) {
    auto k = CreateCpuMamba2Kernels(w);
    std::vector<float> y0, s0;
    batch.Scan(*k, 128, &y0, &s0);
    for (int threads = 1; threads <= 4; ++threads) {
      IntraOpPool pool(threads);
      ScopedIntraOpPool bind(&pool);
      std::vector<float> y, s;
      batch.Scan(*k, 128, &y, &s);
      EXPECT_EQ(std::memcmp(y.data(), y0.data(), sizeof(float) * y.size()), 0)
          << Name(w) << " threads=" << threads;
      EXPECT_EQ(std::memcmp(s.data(), s0.data(), sizeof(float) * s.size()), 0)
          << Name(w) << " threads=" << threads;
    }
  }
}

TEST(BlockedSsdTest, UpdateIsBitwiseIdenticalInlineAndOnPoolsOfOneToFourThreads) {
  const Batch batch(8, 64, 64, 2, {1, 1, 1, 1, 1});
  auto k = CreateCpuMamba2Kernels(SimdWidth::kAuto);
  const int B = 5;
  auto step = [&](std::vector<float>* y, std::vector<float>* s) {
    *s = batch.init;
    y->assign(static_cast<size_t>(B) * batch.H * batch.P, NAN);
    k->SelectiveStateUpdate(batch.Params(s->data(), 128), B, batch.slots.data(),
                            batch.Io(y->data()));
  };
  std::vector<float> y0, s0;
  step(&y0, &s0);
  std::vector<float> want_y, want_states;
  batch.Reference(&want_y, &want_states);
  EXPECT_LT(MaxRelError(y0, want_y), 1e-4);
  EXPECT_LT(MaxRelError(s0, want_states), 1e-4);
  for (int threads = 1; threads <= 4; ++threads) {
    IntraOpPool pool(threads);
    ScopedIntraOpPool bind(&pool);
    std::vector<float> y, s;
    step(&y, &s);
    EXPECT_EQ(std::memcmp(y.data(), y0.data(), sizeof(float) * y.size()), 0) << threads;
    EXPECT_EQ(std::memcmp(s.data(), s0.data(), sizeof(float) * s.size()), 0) << threads;
  }
}

}  // namespace
}  // namespace hc::kernels
