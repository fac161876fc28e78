// Sequence-mixing kernels at the `small` preset's sizes, per prompt length:
// causal paged attention of one prompt from an empty cache (12 query heads,
// 4 KV heads, head_dim 64, fp32 and bf16 KV), one decode query over the same
// context, the SSD chunked scan (24 heads, head_dim 64, state 64, chunk 128)
// and the conv1d prefill (1,664 channels, width 4), each at 256, 1,024 and
// 4,096 tokens on one thread (no intra-op pool), then on a pool of
// AvailableCpus() threads.
//
// Prints milliseconds per call and microseconds per token, and the per-token
// growth from 256 to 4,096 tokens (attention is quadratic: its per-token cost
// grows linearly with the context; the rest should stay flat). Uses only the
// public kernel factories, so the same source links against another build's
// hc_kernels to compare kernels old and new.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <vector>

#include "common/intra_op.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/half.h"

namespace hc::kernels {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kHq = 12, kHkv = 4, kHd = 64, kBs = 16;
constexpr int kH = 24, kP = 64, kN = 64, kChunk = 128, kConvDim = 1664, kWidth = 4;

// Best wall time of `fn` over repetitions lasting at least ~0.3 s (at most 20).
double BestSeconds(const std::function<void()>& fn) {
  double best = 1e30, total = 0.0;
  for (int rep = 0; rep < 20 && (rep < 2 || total < 0.3); ++rep) {
    const auto t0 = Clock::now();
    fn();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::min(best, s);
    total += s;
  }
  return best;
}

struct AttnEnv {
  int T;
  DType dtype;
  std::vector<float> k32, v32, q, out;
  std::vector<uint16_t> k16, v16;
  std::vector<int32_t> table, qsl, computed;

  AttnEnv(int tokens, DType dt) : T(tokens), dtype(dt) {
    const int blocks = (T + kBs - 1) / kBs;
    const size_t elems = static_cast<size_t>(blocks) * kBs * kHkv * kHd;
    for (size_t i = 0; i < elems; ++i) {
      const float kv = 0.01f * static_cast<float>(i % 97) - 0.5f;
      if (dtype == DType::kF32) {
        k32.push_back(kv);
        v32.push_back(-kv);
      } else {
        k16.push_back(F32ToBf16(kv));
        v16.push_back(F32ToBf16(-kv));
      }
    }
    q.resize(static_cast<size_t>(T) * kHq * kHd);
    for (size_t i = 0; i < q.size(); ++i) q[i] = 0.02f * static_cast<float>(i % 89) - 0.9f;
    out.resize(q.size());
    for (int i = 0; i < blocks; ++i) table.push_back(i);
  }
  PagedKvCache Cache() {
    return {.k = dtype == DType::kF32 ? static_cast<void*>(k32.data()) : k16.data(),
            .v = dtype == DType::kF32 ? static_cast<void*>(v32.data()) : v16.data(),
            .dtype = dtype,
            .block_size = kBs,
            .num_kv_heads = kHkv,
            .head_dim = kHd};
  }
  // All T queries from an empty cache (decode = false) or the last one alone.
  void Run(const AttentionKernels& k, bool decode) {
    const int n = decode ? 1 : T;
    const std::vector<int32_t> qsl = {0, n}, done = {T - n};
    k.PagedAttention({.num_q_heads = kHq,
                      .scale = 0.125f,
                      .q = {q.data() + static_cast<size_t>(T - n) * kHq * kHd, kHq * kHd},
                      .out = {out.data(), kHq * kHd}},
                     {.seqs = {1, qsl.data()},
                      .num_computed_tokens = done.data(),
                      .block_tables = table.data(),
                      .max_blocks_per_seq = static_cast<int>(table.size())},
                     Cache());
  }
};

double SsdSeconds(const Mamba2Kernels& k, int T) {
  std::vector<float> x(static_cast<size_t>(T) * kH * kP), dt(static_cast<size_t>(T) * kH),
      bc(static_cast<size_t>(T) * kN), y(x.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.01f * static_cast<float>(i % 101) - 0.5f;
  for (size_t i = 0; i < dt.size(); ++i) dt[i] = -2.0f + 0.1f * static_cast<float>(i % 13);
  for (size_t i = 0; i < bc.size(); ++i) bc[i] = 0.02f * static_cast<float>(i % 31) - 0.3f;
  std::vector<float> a_log(kH, 0.5f), d(kH, 1.0f), bias(kH, 0.0f), st(kH * kP * kN, 0.0f);
  const std::vector<int32_t> qsl = {0, T}, slot = {0};
  const SsmParams p{.num_heads = kH,
                    .head_dim = kP,
                    .state_size = kN,
                    .num_groups = 1,
                    .a_log = a_log.data(),
                    .d = d.data(),
                    .dt_bias = bias.data(),
                    .chunk_size = kChunk,
                    .state = st.data()};
  const SsmTensors io{.x = {x.data(), kH * kP},
                      .dt = {dt.data(), kH},
                      .b = {bc.data(), kN},
                      .c = {bc.data(), kN},
                      .y = {y.data(), kH * kP}};
  return BestSeconds([&] { k.SsdChunkScanVarlen(p, {1, qsl.data()}, slot.data(), io); });
}

double ConvSeconds(const Conv1dKernels& k, int T) {
  std::vector<float> x(static_cast<size_t>(T) * kConvDim), out(x.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.01f * static_cast<float>(i % 101) - 0.5f;
  std::vector<float> w(kConvDim * kWidth, 0.25f), bias(kConvDim, 0.1f),
      state(kConvDim * (kWidth - 1), 0.0f);
  const std::vector<int32_t> qsl = {0, T}, slot = {0};
  const Conv1dParams p{.conv_dim = kConvDim,
                       .width = kWidth,
                       .weight = w.data(),
                       .bias = bias.data(),
                       .apply_silu = true,
                       .state = state.data()};
  return BestSeconds([&] {
    k.CausalConv1dVarlen(p, {1, qsl.data()}, slot.data(), {x.data(), kConvDim},
                         {out.data(), kConvDim});
  });
}

void RunAll(const char* label) {
  auto attn = CreateCpuAttentionKernels();
  auto ssd = CreateCpuMamba2Kernels();
  auto conv = CreateCpuConv1dKernels();
  const std::vector<int> lens = {256, 1024, 4096};
  std::printf("\n== %s (intra-op threads %d) ==\n", label, IntraOpThreads());
  std::printf("%-22s %6s %12s %12s\n", "kernel", "tokens", "ms/call", "us/token");
  auto row = [](const char* name, int T, double s, double per) {
    std::printf("%-22s %6d %12.3f %12.3f\n", name, T, s * 1e3, per * 1e6);
  };
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const char* name = dtype == DType::kF32 ? "attention prefill f32" : "attention prefill bf16";
    double first = 0.0;
    for (int T : lens) {
      AttnEnv env(T, dtype);
      const double s = BestSeconds([&] { env.Run(*attn, false); });
      row(name, T, s, s / T);
      if (T == lens.front()) first = s / T;
      if (T == lens.back()) std::printf("  per-token growth 256 -> 4096: %.2fx\n", s / T / first);
    }
  }
  for (int T : lens) {
    AttnEnv env(T, DType::kF32);
    const double s = BestSeconds([&] { env.Run(*attn, true); });
    row("attention decode f32", T, s, s);
  }
  for (int T : lens) {
    const double s = SsdSeconds(*ssd, T);
    row("ssd chunk scan", T, s, s / T);
  }
  for (int T : lens) {
    const double s = ConvSeconds(*conv, T);
    row("conv1d prefill", T, s, s / T);
  }
}

}  // namespace
}  // namespace hc::kernels

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  hc::kernels::RunAll("one thread");
  const int cpus = hc::AvailableCpus();
  if (cpus > 1) {
    hc::IntraOpPool pool(cpus);
    hc::ScopedIntraOpPool bind(&pool);
    hc::kernels::RunAll("intra-op pool");
  }
  return 0;
}
