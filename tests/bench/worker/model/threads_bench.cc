// Intra-op threads (hc-worker --threads) on the CPU backend: prefill tokens/s
// at 256 and 1,024 tokens and decode tokens/s at batch 1 and 8, with 1 and 2
// threads, on the `small` preset (fp32, tp = 1, seeded random weights). The
// two configurations run interleaved, each measurement twice (best kept), and
// the ratios are printed from this one run; the machine's CPU, its available
// CPUs and its load average are printed alongside (shared machines: noisy).
// Goal (issue 19): --threads 2 prefill >= 1.7x --threads 1 on a 2-core machine.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "common/intra_op.h"
#include "common/logging.h"
#include "tests/unit/worker/model/test_model.h"
#include "worker/model/synthetic_checkpoint.h"

namespace hc::model {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kBlockSize = 16;
constexpr int kNumBlocks = 1024;
constexpr int kThreads[2] = {1, 2};

std::string CpuName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

class Bench {
 public:
  Bench(const ModelConfig& config, const TensorSource& source, int threads) : config_(config) {
    runner_ = testing::TpRunner::Create(config, source,
                                        {.tp = 1,
                                         .num_blocks = kNumBlocks,
                                         .block_size = kBlockSize,
                                         .num_slots = 8,
                                         .rank_threads = {threads}})
                  .value();
  }

  // Tokens/s of one prefill of `len` tokens from an empty state.
  double Prefill(int len) {
    const std::vector<int32_t> tokens = Tokens(len, 1);
    const std::vector<int32_t> table = Blocks(len);
    HC_CHECK(runner_->cache().ZeroMambaSlot(0).ok());
    ForwardBatch fb{{{.token_ids = tokens,
                      .num_computed_tokens = 0,
                      .block_table = table,
                      .mamba_slot = 0,
                      .need_logits = true}}};
    return len / Time(fb);
  }

  // Tokens/s of `steps` decode steps of `batch` sequences after a prompt of
  // `prompt` tokens each (the prompt is not timed).
  double Decode(int batch, int prompt, int steps) {
    std::vector<std::vector<int32_t>> tokens, tables;
    ForwardBatch fb;
    for (int s = 0; s < batch; ++s) {
      tokens.push_back(Tokens(prompt + steps, 10 + s));
      tables.push_back(Blocks(prompt + steps));
      HC_CHECK(runner_->cache().ZeroMambaSlot(s).ok());
    }
    for (int s = 0; s < batch; ++s) {
      fb.seqs.push_back({.token_ids = std::span(tokens[s]).first(prompt),
                         .num_computed_tokens = 0,
                         .block_table = tables[s],
                         .mamba_slot = s});
    }
    Time(fb);
    double seconds = 0;
    for (int step = 0; step < steps; ++step) {
      for (int s = 0; s < batch; ++s) {
        fb.seqs[s].token_ids = std::span(tokens[s]).subspan(prompt + step, 1);
        fb.seqs[s].num_computed_tokens = prompt + step;
        fb.seqs[s].need_logits = true;
      }
      seconds += Time(fb);
    }
    return batch * steps / seconds;
  }

 private:
  double Time(const ForwardBatch& fb) {
    const auto t0 = Clock::now();
    auto logits = runner_->Forward(fb);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    HC_CHECK(logits.ok()) << logits.status();
    return s;
  }
  std::vector<int32_t> Tokens(int n, uint32_t seed) const {
    std::mt19937 rng(seed);
    std::vector<int32_t> t(n);
    for (auto& x : t) x = static_cast<int32_t>(rng() % config_.vocab_size);
    return t;
  }
  std::vector<int32_t> Blocks(int tokens) {
    std::vector<int32_t> b;
    for (int i = 0; i < (tokens + kBlockSize - 1) / kBlockSize; ++i) {
      b.push_back(next_block_++ % kNumBlocks);
    }
    return b;
  }

  ModelConfig config_;
  std::unique_ptr<testing::TpRunner> runner_;
  int next_block_ = 0;
};

}  // namespace
}  // namespace hc::model

int main() {
  using namespace hc::model;
  absl::StatusOr<ModelConfig> config = SyntheticModelConfig("small");
  HC_CHECK(config.ok()) << config.status();
  const testing::RandomTensorSource source(*config, 1);
  std::printf("threads_bench: small preset (D=%d, %d layers), fp32, tp 1\n", config->hidden_size,
              config->num_hidden_layers);
  std::printf("CPU: %s; available CPUs (affinity, cgroup quota): %d; load average at start: %s\n",
              CpuName().c_str(), hc::AvailableCpus(), LoadAverage().c_str());
  std::unique_ptr<Bench> bench[2];
  for (int i = 0; i < 2; ++i) bench[i] = std::make_unique<Bench>(*config, source, kThreads[i]);

  struct Row {
    const char* name;
    double tps[2] = {0, 0};
  };
  Row rows[] = {
      {"prefill 256 tokens"}, {"prefill 1024 tokens"}, {"decode batch 1"}, {"decode batch 8"}};
  // Two rounds, the configurations interleaved within each; best of the two.
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 2; ++i) {
      Bench& b = *bench[i];
      rows[0].tps[i] = std::max(rows[0].tps[i], b.Prefill(256));
      rows[1].tps[i] = std::max(rows[1].tps[i], b.Prefill(1024));
      rows[2].tps[i] = std::max(rows[2].tps[i], b.Decode(1, 64, 16));
      rows[3].tps[i] = std::max(rows[3].tps[i], b.Decode(8, 64, 8));
    }
  }
  std::printf("\n== threads summary (tokens/s; noisy on a shared machine) ==\n");
  std::printf("%-22s %12s %12s %8s\n", "", "--threads 1", "--threads 2", "ratio");
  for (const Row& r : rows) {
    std::printf("%-22s %12.1f %12.1f %7.2fx\n", r.name, r.tps[0], r.tps[1],
                r.tps[0] > 0 ? r.tps[1] / r.tps[0] : 0.0);
  }
  std::printf("goal: --threads 2 prefill >= 1.7x --threads 1 (2-core machine)\n");
  std::printf("load average at end: %s\n", LoadAverage().c_str());
  return 0;
}
