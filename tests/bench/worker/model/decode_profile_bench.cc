// Where a decode step's time goes: `batch` sequences (1 and 8) of the `small`
// preset (tp = 1, seeded random weights, the compute path of hc-worker's
// decode) each bring one token per step after a prompt, with the per-family
// kernel timer on ($HC_KERNEL_PROFILE, kernels/profiled_kernels.h).
//
// Prints, per dtype and batch, the wall time of a step (median of the steps),
// aggregate tokens/s, the time of each kernel family with its share of the
// forward's wall time ("rest": the model's own host work: flattening the
// batch, index upload, logits copy), and the GEMM's effective weight
// bandwidth and FLOP rate (every weight is read once per step; the LM head
// runs on the rows that need logits).
// $HC_DECODE_PROFILE_PROMPT sets the prompt length (default 256; the peer
// benchmark's batch section uses ~250-token prompts and 96 new tokens),
// $HC_DECODE_PROFILE_STEPS the number of timed steps (default 32),
// $HC_DECODE_PROFILE_DTYPES ("fp32" (default), "bf16", "fp32,bf16") the dtypes,
// $HC_DECODE_PROFILE_BATCHES (default "1,8") the batch sizes,
// $HC_DECODE_PROFILE_THREADS (default 1) the intra-op threads (hc-worker
// --threads; kernel times are then wall times of the calls),
// $HC_DECODE_PROFILE_PRESET (default "small") the synthetic preset (e.g.
// "nemotron-moe-small": with routed experts not every weight is read in a
// step, so the printed GEMM bandwidth is then an upper bound).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/intra_op.h"
#include "common/logging.h"
#include "kernels/profiled_kernels.h"
#include "tests/unit/worker/model/test_model.h"
#include "worker/model/synthetic_checkpoint.h"

namespace hc::model {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kBlockSize = 16;

int EnvInt(const char* name, int fallback) {
  const char* env = std::getenv(name);
  int n = fallback;
  if (env != nullptr && *env != '\0') {
    HC_CHECK(absl::SimpleAtoi(env, &n) && n > 0) << "bad " << name;
  }
  return n;
}

std::vector<std::string> EnvList(const char* name, const char* fallback) {
  const char* env = std::getenv(name);
  return absl::StrSplit(env != nullptr && *env != '\0' ? env : fallback, ',');
}

// Multiply-adds of one token through every linear layer (the LM head apart).
double LayerMacsPerToken(const ModelConfig& c, const TensorSource& source) {
  double macs = 0;
  for (const auto& name : source.Names()) {
    const auto info = source.Get(name);
    if (info->shape.size() != 2 || name.find("embed") != std::string::npos ||
        name.find("lm_head") != std::string::npos) {
      continue;
    }
    macs += static_cast<double>(info->shape[0]) * info->shape[1];
  }
  (void)c;
  return macs;
}

void Run(const std::string& preset, const std::string& dtype_name, int batch, int prompt, int steps,
         int threads) {
  const runtime::DType dtype = dtype_name == "bf16" ? runtime::DType::kBF16 : runtime::DType::kF32;
  absl::StatusOr<ModelConfig> config = SyntheticModelConfig(preset);
  HC_CHECK(config.ok()) << config.status();
  const int len = prompt + steps;
  const int blocks_per_seq = (len + kBlockSize - 1) / kBlockSize;
  testing::RandomTensorSource source(*config, 1, /*bf16_representable=*/true);
  auto runner = testing::TpRunner::Create(*config, source,
                                          {.tp = 1,
                                           .num_blocks = blocks_per_seq * batch,
                                           .block_size = kBlockSize,
                                           .num_slots = batch,
                                           .weight_dtype = dtype,
                                           .kv_dtype = dtype,
                                           .rank_threads = {threads}})
                    .value();
  const size_t weight_bytes = runner->backend().allocated_bytes() - runner->cache().TotalBytes();
  std::mt19937 rng(1);
  std::vector<std::vector<int32_t>> tokens(batch), tables(batch);
  ForwardBatch fb;
  for (int s = 0; s < batch; ++s) {
    tokens[s].resize(len);
    for (auto& t : tokens[s]) t = static_cast<int32_t>(rng() % config->vocab_size);
    for (int b = 0; b < blocks_per_seq; ++b) tables[s].push_back(s * blocks_per_seq + b);
    HC_CHECK_OK(runner->cache().ZeroMambaSlot(s));
    fb.seqs.push_back({.token_ids = std::span(tokens[s]).first(prompt),
                       .num_computed_tokens = 0,
                       .block_table = tables[s],
                       .mamba_slot = s});
  }
  HC_CHECK(runner->Forward(fb).ok());
  std::vector<double> step_s;
  kernels::ProcessKernelProfile().Reset();
  for (int step = 0; step < steps; ++step) {
    for (int s = 0; s < batch; ++s) {
      fb.seqs[s].token_ids = std::span(tokens[s]).subspan(prompt + step, 1);
      fb.seqs[s].num_computed_tokens = prompt + step;
      fb.seqs[s].need_logits = true;
    }
    const auto t0 = Clock::now();
    auto logits = runner->Forward(fb);
    step_s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    HC_CHECK(logits.ok()) << logits.status();
  }
  const kernels::KernelProfile::Totals totals = kernels::ProcessKernelProfile().Snapshot();
  double total = 0;
  for (double s : step_s) total += s;
  std::vector<double> sorted = step_s;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  std::printf(
      "\n-- %s, batch %d, context %d..%d: step median %.2f ms (mean %.2f, min %.2f), "
      "%.1f tokens/s (median) --\n",
      dtype_name.c_str(), batch, prompt, len, median * 1e3, total * 1e3 / steps,
      sorted.front() * 1e3, batch / median);
  std::printf("%s",
              kernels::KernelProfile::Format(totals, static_cast<int64_t>(total * 1e9)).c_str());
  const double gemm_s = totals[static_cast<int>(kernels::KernelFamily::kGemm)].nanos * 1e-9 / steps;
  const double lm_macs = static_cast<double>(config->vocab_size) * config->hidden_size;
  const double flops = 2.0 * batch * (LayerMacsPerToken(*config, source) + lm_macs);
  // The embedding table is resident but only `batch` rows of it are read.
  const double read_bytes =
      static_cast<double>(weight_bytes) -
      lm_macs * (dtype == runtime::DType::kBF16 ? 2 : 4) * (config->tie_word_embeddings ? 0 : 1);
  std::printf(
      "GEMM per step %.2f ms: weights %.1f MB read at %.1f GB/s, %.2f GFLOP at %.1f "
      "GFLOP/s\n",
      gemm_s * 1e3, read_bytes / 1e6, read_bytes / gemm_s / 1e9, flops / 1e9, flops / gemm_s / 1e9);
}

}  // namespace
}  // namespace hc::model

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  // Before the backend is created: CpuBackend wraps its kernels when set.
  setenv("HC_KERNEL_PROFILE", "1", 1);
  const int prompt = hc::model::EnvInt("HC_DECODE_PROFILE_PROMPT", 256);
  const int steps = hc::model::EnvInt("HC_DECODE_PROFILE_STEPS", 32);
  const char* preset_env = std::getenv("HC_DECODE_PROFILE_PRESET");
  const std::string preset =
      preset_env != nullptr && *preset_env != '\0' ? preset_env : std::string("small");
  const int threads = hc::model::EnvInt("HC_DECODE_PROFILE_THREADS", 1);
  std::printf("decode profile: %s preset, tp=1, intra-op threads %d, CPUs available %d\n",
              preset.c_str(), threads, hc::AvailableCpus());
  for (const std::string& d : hc::model::EnvList("HC_DECODE_PROFILE_DTYPES", "fp32")) {
    for (const std::string& b : hc::model::EnvList("HC_DECODE_PROFILE_BATCHES", "1,8")) {
      int batch = 0;
      HC_CHECK(absl::SimpleAtoi(b, &batch) && batch > 0) << "bad batch " << b;
      hc::model::Run(preset, d, batch, prompt, steps, threads);
    }
  }
  return 0;
}
