// Hybrid model throughput on the CPU backend (tp = 1, a synthetic preset's
// config, seeded random bf16-representable weights; $HC_MODEL_BENCH_PRESET
// picks the preset: small (Bamba, ~80M parameters, the default),
// granite-small, nemotron-small):
//   - fp32 vs bf16 weights + KV cache, in one run: resident weight bytes,
//     prefill and decode tokens/s at batch 1 and 8, printed as bf16/fp32
//     ratios (goal: bf16 decode >= 1.6x fp32 on CPU; decode is memory-bound);
//   - tokens/s are per CPU-second of the process (ProcessSeconds);
//   - the cached-turn speed-up (fp32): a turn adding 64 tokens to a 2,048-token
//     history, computed from the committed state vs from scratch.
// Prints a summary with the ratio measured in this run.
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/logging.h"
#include "kernels/cpu/cpu_kernels.h"
#include "tests/unit/worker/model/test_model.h"
#include "worker/model/synthetic_checkpoint.h"

namespace hc::model {
namespace {

// CPU seconds of the whole process (every thread), not wall time: the
// development machine is shared with other builds, and time spent
// descheduled is not the model's speed.
double ProcessSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}
constexpr int kBlockSize = 16;

const char* PresetName() {
  const char* p = std::getenv("HC_MODEL_BENCH_PRESET");
  return p != nullptr && *p != '\0' ? p : "small";
}

// The preset's configuration (hc-checkpoint --preset <preset>), with seeded
// random weights generated in memory.
ModelConfig SmallConfig() {
  absl::StatusOr<ModelConfig> c = SyntheticModelConfig(PresetName());
  HC_CHECK(c.ok()) << c.status();
  return *c;
}

int64_t ParamCount(const TensorSource& source) {
  int64_t n = 0;
  for (const auto& name : source.Names()) n += source.Get(name)->num_bytes / sizeof(float);
  return n;
}

// One model per dtype (weights and KV cache), same weights.
struct Env {
  ModelConfig config = SmallConfig();
  std::unique_ptr<testing::RandomTensorSource> source;
  std::unique_ptr<testing::TpRunner> runner;
  size_t weight_bytes = 0;  // resident: the backend's bytes less the cache memory
  int next_block = 0;
  static constexpr int kNumBlocks = 4096;

  explicit Env(runtime::DType dtype) {
    source = std::make_unique<testing::RandomTensorSource>(config, 1, /*bf16_representable=*/true);
    runner =
        testing::TpRunner::Create(config, *source, 1, kNumBlocks, kBlockSize, 32, 0, dtype, dtype)
            .value();
    weight_bytes = runner->backend().allocated_bytes() - runner->cache().TotalBytes();
  }
  std::vector<int32_t> Tokens(int n, uint32_t seed) const {
    std::mt19937 rng(seed);
    std::vector<int32_t> t(n);
    for (auto& x : t) x = rng() % config.vocab_size;
    return t;
  }
  std::vector<int32_t> Blocks(int tokens) {
    std::vector<int32_t> b;
    for (int i = 0; i < (tokens + kBlockSize - 1) / kBlockSize; ++i) {
      b.push_back(next_block++ % kNumBlocks);
    }
    return b;
  }
};

// dtype 0: fp32, 1: bf16.
Env& GetEnv(int dtype = 0) {
  static Env* envs[2] = {};
  if (envs[dtype] == nullptr) {
    envs[dtype] = new Env(dtype == 0 ? runtime::DType::kF32 : runtime::DType::kBF16);
  }
  return *envs[dtype];
}

// [dtype][batch 1 / 8]
double g_prefill_tps[2][2], g_decode_tps[2][2], g_turn_cached_s, g_turn_scratch_s;

// Prefill `batch` sequences of `len` tokens each from an empty state.
void BM_Prefill(benchmark::State& state) {
  Env& env = GetEnv(state.range(2));
  const int batch = state.range(0), len = state.range(1);
  std::vector<std::vector<int32_t>> tokens, tables;
  for (int s = 0; s < batch; ++s) {
    tokens.push_back(env.Tokens(len, s));
    tables.push_back(env.Blocks(len));
  }
  double seconds = 0;
  for (auto _ : state) {
    ForwardBatch fb;
    for (int s = 0; s < batch; ++s) {
      (void)env.runner->cache().ZeroMambaSlot(s);
      fb.seqs.push_back({.token_ids = tokens[s],
                         .num_computed_tokens = 0,
                         .block_table = tables[s],
                         .mamba_slot = s,
                         .need_logits = true});
    }
    const double t0 = ProcessSeconds();
    auto logits = env.runner->Forward(fb);
    seconds += ProcessSeconds() - t0;
    if (!logits.ok()) state.SkipWithError(logits.status().ToString().c_str());
  }
  const double tps = batch * len * state.iterations() / seconds;
  state.counters["tokens_per_s"] = tps;
  g_prefill_tps[state.range(2)][batch == 1 ? 0 : 1] = tps;
}
// Args: batch, prompt length, dtype (0 fp32, 1 bf16); fp32 and bf16 interleaved.
BENCHMARK(BM_Prefill)
    ->Args({1, 256, 0})
    ->Args({1, 256, 1})
    ->Args({8, 256, 0})
    ->Args({8, 256, 1})
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond);

// Decode steps for `batch` sequences after a 256-token prompt.
void BM_Decode(benchmark::State& state) {
  Env& env = GetEnv(state.range(1));
  const int batch = state.range(0), prompt = 256, steps = 16;
  std::vector<std::vector<int32_t>> tokens, tables;
  ForwardBatch fb;
  for (int s = 0; s < batch; ++s) {
    tokens.push_back(env.Tokens(prompt + steps, 100 + s));
    tables.push_back(env.Blocks(prompt + steps));
    (void)env.runner->cache().ZeroMambaSlot(s);
    fb.seqs.push_back({.token_ids = std::span(tokens[s]).first(prompt),
                       .num_computed_tokens = 0,
                       .block_table = tables[s],
                       .mamba_slot = s});
  }
  if (!env.runner->Forward(fb).ok()) state.SkipWithError("prompt failed");
  int step = 0;
  double seconds = 0;
  for (auto _ : state) {
    if (step == steps) break;
    for (int s = 0; s < batch; ++s) {
      fb.seqs[s].token_ids = std::span(tokens[s]).subspan(prompt + step, 1);
      fb.seqs[s].num_computed_tokens = prompt + step;
      fb.seqs[s].need_logits = true;
    }
    const double t0 = ProcessSeconds();
    auto logits = env.runner->Forward(fb);
    seconds += ProcessSeconds() - t0;
    if (!logits.ok()) state.SkipWithError(logits.status().ToString().c_str());
    ++step;
  }
  const double tps = batch * state.iterations() / seconds;
  state.counters["tokens_per_s"] = tps;
  g_decode_tps[state.range(1)][batch == 1 ? 0 : 1] = tps;
}
// Args: batch, dtype.
BENCHMARK(BM_Decode)->Args({1, 0})->Args({1, 1})->Args({8, 0})->Args({8, 1})->Iterations(16)->Unit(
    benchmark::kMillisecond);

// A turn of 64 new tokens on a 2,048-token history.
void BM_Turn(benchmark::State& state) {
  Env& env = GetEnv();
  const bool cached = state.range(0) == 1;
  const int history = 2048, suffix = 64;
  const auto tokens = env.Tokens(history + suffix, 7);
  const auto table = env.Blocks(history + suffix);
  const int32_t committed_slot = 20, turn_slot = 21;
  if (cached) {  // commit the history once, outside the timing
    (void)env.runner->cache().ZeroMambaSlot(committed_slot);
    ForwardBatch fb{{{.token_ids = std::span(tokens).first(history),
                      .num_computed_tokens = 0,
                      .block_table = table,
                      .mamba_slot = committed_slot}}};
    if (!env.runner->Forward(fb).ok()) state.SkipWithError("history failed");
  }
  double seconds = 0;
  for (auto _ : state) {
    // Attach: copy the committed Mamba state into the turn's slot (timed, it
    // is part of the turn), or start from zero.
    const double t0 = ProcessSeconds();
    ForwardBatch fb;
    if (cached) {
      (void)env.runner->cache().CopyMambaSlot(committed_slot, turn_slot);
      fb.seqs.push_back({.token_ids = std::span(tokens).subspan(history),
                         .num_computed_tokens = history,
                         .block_table = table,
                         .mamba_slot = turn_slot,
                         .need_logits = true});
    } else {
      (void)env.runner->cache().ZeroMambaSlot(turn_slot);
      fb.seqs.push_back({.token_ids = tokens,
                         .num_computed_tokens = 0,
                         .block_table = table,
                         .mamba_slot = turn_slot,
                         .need_logits = true});
    }
    auto logits = env.runner->Forward(fb);
    seconds += ProcessSeconds() - t0;
    if (!logits.ok()) state.SkipWithError(logits.status().ToString().c_str());
  }
  (cached ? g_turn_cached_s : g_turn_scratch_s) = seconds / state.iterations();
}
BENCHMARK(BM_Turn)->Arg(1)->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Turn)->Arg(0)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace hc::model

int main(int argc, char** argv) {
  using namespace hc::model;
  const ModelConfig& c = GetEnv().config;
  std::printf(
      "model: %s preset (%s), %.1fM parameters (D=%d, %d layers: %d Mamba2 + %d attention "
      "mixers), fp32 vs bf16, tp=1\n",
      PresetName(), std::string(ModelTypeName(c.architecture)).c_str(),
      ParamCount(*GetEnv().source) / 1e6, c.hidden_size, c.num_hidden_layers, c.num_mamba_layers(),
      c.num_attention_layers());
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::printf("\n== model summary (CPU backend, bf16 GEMM path %s) ==\n",
              hc::kernels::CpuBf16GemmName(hc::kernels::CpuBf16GemmImpl::kAuto));
  const double w32 = GetEnv(0).weight_bytes, w16 = GetEnv(1).weight_bytes;
  std::printf("resident weight bytes: fp32 %.1f MiB, bf16 %.1f MiB, bf16/fp32 %.3f\n",
              w32 / (1 << 20), w16 / (1 << 20), w16 / w32);
  const char* names[2] = {"fp32", "bf16"};
  for (int d = 0; d < 2; ++d) {
    std::printf("%s prefill tokens/s: batch 1 %.0f, batch 8 %.0f (256-token prompts)\n", names[d],
                g_prefill_tps[d][0], g_prefill_tps[d][1]);
    std::printf("%s decode  tokens/s: batch 1 %.1f, batch 8 %.1f (context ~256)\n", names[d],
                g_decode_tps[d][0], g_decode_tps[d][1]);
  }
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  std::printf(
      "bf16/fp32: decode batch 1 %.2fx, batch 8 %.2fx (goal >= 1.6x); prefill batch 1 %.2fx, "
      "batch 8 %.2fx\n",
      ratio(g_decode_tps[1][0], g_decode_tps[0][0]), ratio(g_decode_tps[1][1], g_decode_tps[0][1]),
      ratio(g_prefill_tps[1][0], g_prefill_tps[0][0]),
      ratio(g_prefill_tps[1][1], g_prefill_tps[0][1]));
  if (g_turn_cached_s > 0 && g_turn_scratch_s > 0) {
    std::printf(
        "turn +64 tokens on 2048 history: cached %.1f ms, scratch %.1f ms, "
        "speed-up %.1fx (goal >= 20x, limit ~33x)\n",
        g_turn_cached_s * 1e3, g_turn_scratch_s * 1e3, g_turn_scratch_s / g_turn_cached_s);
  }
  return 0;
}
