// Where served prefill time goes: one prompt of 256, 1,024 and 4,096 tokens
// through the model on the CPU backend (tp = 1, the `small` preset with
// seeded random weights, the compute path of hc-worker's prefill), fp32 and
// bf16 weights + KV cache, with the per-family kernel timer on
// ($HC_KERNEL_PROFILE, kernels/profiled_kernels.h).
//
// Prints, per dtype and length, prefill tokens/s and per-token cost, and the
// time of each kernel family with its share of the forward's wall time, then
// the per-token cost at 1K and 4K relative to 256 (the growth with context).
// As hc-worker serves it, the prompt runs in chunks of at most 512 tokens
// (EngineOptions::max_batch_tokens' default), each continuing from the cache
// the previous one left; $HC_PREFILL_PROFILE_CHUNK changes the chunk (0: the
// whole prompt in one forward).
// $HC_PREFILL_PROFILE_LENS (comma-separated) overrides the lengths;
// $HC_PREFILL_PROFILE_DTYPES ("fp32", "bf16", "fp32,bf16" (default)) the dtypes.
//
// Then, per dtype, the same table for decode: batch 1 and batch 8 sequences
// after a 256-token prompt each, $HC_PROFILE_DECODE_STEPS (default 32; 0: no
// decode section) steps of one token per sequence, ms per step.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
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

std::vector<int> Lengths() {
  std::vector<int> lens = {256, 1024, 4096};
  if (const char* env = std::getenv("HC_PREFILL_PROFILE_LENS"); env != nullptr && *env != '\0') {
    lens.clear();
    for (absl::string_view part : absl::StrSplit(env, ',')) {
      int n = 0;
      HC_CHECK(absl::SimpleAtoi(part, &n) && n > 0) << "bad length in HC_PREFILL_PROFILE_LENS";
      lens.push_back(n);
    }
  }
  return lens;
}

int ChunkTokens() {
  const char* env = std::getenv("HC_PREFILL_PROFILE_CHUNK");
  int n = 512;
  if (env != nullptr && *env != '\0') {
    HC_CHECK(absl::SimpleAtoi(env, &n) && n >= 0) << "bad HC_PREFILL_PROFILE_CHUNK";
  }
  return n;
}

int DecodeSteps() {
  const char* env = std::getenv("HC_PROFILE_DECODE_STEPS");
  int n = 32;
  if (env != nullptr && *env != '\0') {
    HC_CHECK(absl::SimpleAtoi(env, &n) && n >= 0) << "bad HC_PROFILE_DECODE_STEPS";
  }
  return n;
}

std::vector<std::string> Dtypes() {
  const char* env = std::getenv("HC_PREFILL_PROFILE_DTYPES");
  const std::string s = env != nullptr && *env != '\0' ? env : "fp32,bf16";
  return absl::StrSplit(s, ',');
}

// CPU seconds of the whole process: on the shared machine the wall time of a
// step includes time descheduled; the per-family times are wall times.
double ProcessSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Decode steps of `batch` sequences after a prompt of kDecodePrompt tokens
// each, the profile over the steps only.
void RunDecode(testing::TpRunner& runner, const ModelConfig& config, const std::string& dtype_name,
               int batch, int steps) {
  constexpr int kDecodePrompt = 256;
  const int per_seq = (kDecodePrompt + steps + kBlockSize - 1) / kBlockSize;
  std::mt19937 rng(2);
  std::vector<std::vector<int32_t>> tokens(batch), tables(batch);
  ForwardBatch fb;
  for (int s = 0; s < batch; ++s) {
    tokens[s].resize(kDecodePrompt + steps);
    for (auto& t : tokens[s]) t = static_cast<int32_t>(rng() % config.vocab_size);
    for (int i = 0; i < per_seq; ++i) tables[s].push_back(s * per_seq + i);
    (void)runner.cache().ZeroMambaSlot(s);
    fb.seqs.push_back({.token_ids = std::span(tokens[s]).first(kDecodePrompt),
                       .num_computed_tokens = 0,
                       .block_table = tables[s],
                       .mamba_slot = s});
  }
  HC_CHECK(runner.Forward(fb).ok());
  kernels::ProcessKernelProfile().Reset();
  const double cpu0 = ProcessSeconds();
  const auto t0 = Clock::now();
  for (int step = 0; step < steps; ++step) {
    for (int s = 0; s < batch; ++s) {
      fb.seqs[s].token_ids = std::span(tokens[s]).subspan(kDecodePrompt + step, 1);
      fb.seqs[s].num_computed_tokens = kDecodePrompt + step;
      fb.seqs[s].need_logits = true;
    }
    auto logits = runner.Forward(fb);
    HC_CHECK(logits.ok()) << logits.status();
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double cpu = ProcessSeconds() - cpu0;
  const kernels::KernelProfile::Totals totals = kernels::ProcessKernelProfile().Snapshot();
  std::printf(
      "\n-- %s decode, batch %d: %d steps, %.3f ms/step wall, %.3f ms/step CPU, %.1f tokens/s "
      "per CPU second --\n",
      dtype_name.c_str(), batch, steps, s * 1e3 / steps, cpu * 1e3 / steps, batch * steps / cpu);
  std::printf("%s", kernels::KernelProfile::Format(totals, static_cast<int64_t>(s * 1e9)).c_str());
}

void Run(const std::string& dtype_name, const std::vector<int>& lens, int chunk) {
  const runtime::DType dtype = dtype_name == "bf16" ? runtime::DType::kBF16 : runtime::DType::kF32;
  absl::StatusOr<ModelConfig> config = SyntheticModelConfig("small");
  HC_CHECK(config.ok()) << config.status();
  int max_len = 0;
  for (int n : lens) max_len = std::max(max_len, n);
  testing::RandomTensorSource source(*config, 1, /*bf16_representable=*/true);
  const int steps = DecodeSteps();
  const int decode_blocks = 8 * ((256 + steps + kBlockSize - 1) / kBlockSize);
  const int blocks = std::max((max_len + kBlockSize - 1) / kBlockSize, decode_blocks);
  auto runner =
      testing::TpRunner::Create(*config, source, 1, blocks, kBlockSize, 8, 0, dtype, dtype).value();
  std::mt19937 rng(1);
  std::vector<int32_t> tokens(max_len), table((max_len + kBlockSize - 1) / kBlockSize);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % config->vocab_size);
  for (size_t i = 0; i < table.size(); ++i) table[i] = static_cast<int>(i);
  std::vector<double> per_token_ms;
  for (int len : lens) {
    // 256 tokens: best of 3 (short and noisy); longer prompts once.
    const int reps = len <= 256 ? 3 : 1;
    double best = 1e30;
    kernels::KernelProfile::Totals totals{};
    for (int rep = 0; rep < reps; ++rep) {
      (void)runner->cache().ZeroMambaSlot(0);
      kernels::ProcessKernelProfile().Reset();
      const auto t0 = Clock::now();
      const int step = chunk > 0 ? chunk : len;
      for (int done = 0; done < len; done += step) {
        const int n = std::min(step, len - done);
        ForwardBatch fb{{{.token_ids = std::span(tokens).subspan(done, n),
                          .num_computed_tokens = done,
                          .block_table = table,
                          .mamba_slot = 0,
                          .need_logits = done + n == len}}};
        auto logits = runner->Forward(fb);
        HC_CHECK(logits.ok()) << logits.status();
      }
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      if (s < best) {
        best = s;
        totals = kernels::ProcessKernelProfile().Snapshot();
      }
    }
    per_token_ms.push_back(best * 1e3 / len);
    std::printf("\n-- %s, %d tokens: %.3f s, %.1f tokens/s, %.3f ms/token --\n", dtype_name.c_str(),
                len, best, len / best, best * 1e3 / len);
    std::printf("%s",
                kernels::KernelProfile::Format(totals, static_cast<int64_t>(best * 1e9)).c_str());
  }
  std::printf("\n%s per-token cost relative to %d tokens:", dtype_name.c_str(), lens[0]);
  for (size_t i = 0; i < lens.size(); ++i) {
    std::printf(" %d: %.2fx", lens[i], per_token_ms[i] / per_token_ms[0]);
  }
  std::printf("\n");
  if (steps > 0) {
    for (const int batch : {1, 8}) RunDecode(*runner, *config, dtype_name, batch, steps);
  }
}

}  // namespace
}  // namespace hc::model

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  // Before the backend is created: CpuBackend wraps its kernels when set.
  setenv("HC_KERNEL_PROFILE", "1", 1);
  const int chunk = hc::model::ChunkTokens();
  std::printf(
      "prefill profile: small preset, tp=1, chunks of %d tokens, intra-op threads %d, CPUs "
      "available %d\n",
      chunk, hc::IntraOpThreads(), hc::AvailableCpus());
  const std::vector<int> lens = hc::model::Lengths();
  for (const std::string& d : hc::model::Dtypes()) hc::model::Run(d, lens, chunk);
  return 0;
}
