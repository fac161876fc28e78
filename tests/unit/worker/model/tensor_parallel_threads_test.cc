// Intra-op threads (--threads) never change a bit of the model's output: for
// every architecture and weight dtype, the logits of a batched prefill and of
// decode steps are bitwise the same with 1 and 3 threads, and with --tp 2 at
// 1 and 2 threads per rank (--threads 2 vs 4). The kernels' grain is 1 so
// that every call that can be split is split even on the tiny model.
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/worker/model/test_model.h"

namespace hc::model {
namespace {

using runtime::DType;
using testing::RandomTensorSource;
using testing::TinyArch;
using testing::TinyArchName;
using testing::TinyConfig;
using testing::TpRunner;

constexpr int kBlockSize = 4;
constexpr int kPromptLens[] = {13, 22};
constexpr int kDecodeSteps = 4;

// All logits of: one batched prefill of two prompts, then kDecodeSteps decode
// steps of both (greedy on the first run's tokens, fixed inputs for both runs).
std::vector<float> RunConversation(const ModelConfig& config, const RandomTensorSource& source,
                                   int tp, std::vector<int> rank_threads, DType dtype) {
  kernels::CpuKernelOptions kernels;
  kernels.grain = {.gemm_macs = 1, .pointwise_elems = 1};
  auto runner = TpRunner::Create(config, source,
                                 {.tp = tp,
                                  .num_blocks = 64,
                                  .block_size = kBlockSize,
                                  .num_slots = 2,
                                  .weight_dtype = dtype,
                                  .kv_dtype = dtype,
                                  .rank_threads = std::move(rank_threads),
                                  .kernels = kernels});
  EXPECT_TRUE(runner.ok()) << runner.status();
  if (!runner.ok()) return {};
  std::mt19937 rng(11);
  std::vector<std::vector<int32_t>> tokens(2), tables(2);
  for (int s = 0; s < 2; ++s) {
    tokens[s].resize(kPromptLens[s] + kDecodeSteps);
    for (int32_t& t : tokens[s]) t = static_cast<int32_t>(rng() % config.vocab_size);
    for (int b = 0; b * kBlockSize < static_cast<int>(tokens[s].size()); ++b) {
      tables[s].push_back(s * 16 + b);
    }
    EXPECT_TRUE((*runner)->cache().ZeroMambaSlot(s).ok());
  }
  std::vector<float> all;
  for (int step = 0; step <= kDecodeSteps; ++step) {
    ForwardBatch batch;
    for (int s = 0; s < 2; ++s) {
      const int begin = step == 0 ? 0 : kPromptLens[s] + step - 1;
      const int len = step == 0 ? kPromptLens[s] : 1;
      batch.seqs.push_back({.token_ids = std::span(tokens[s]).subspan(begin, len),
                            .num_computed_tokens = begin,
                            .block_table = tables[s],
                            .mamba_slot = s,
                            .need_logits = true});
    }
    auto logits = (*runner)->Forward(batch);
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (!logits.ok()) return {};
    all.insert(all.end(), logits->begin(), logits->end());
  }
  return all;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return !a.empty() && a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct Case {
  TinyArch arch;
  DType dtype;
};

class ThreadsBitwiseTest : public ::testing::TestWithParam<Case> {};

TEST_P(ThreadsBitwiseTest, LogitsAreBitwiseIndependentOfTheThreadCount) {
  const auto [arch, dtype] = GetParam();
  const ModelConfig config = TinyConfig(1, arch);
  const RandomTensorSource source(config, 21, /*bf16_representable=*/dtype == DType::kBF16);
  const std::vector<float> one = RunConversation(config, source, 1, {1}, dtype);
  EXPECT_TRUE(SameBits(RunConversation(config, source, 1, {3}, dtype), one))
      << TinyArchName(arch) << ": --threads 3 differs from --threads 1";
  const std::vector<float> tp_one_each = RunConversation(config, source, 2, {1, 1}, dtype);
  EXPECT_TRUE(SameBits(RunConversation(config, source, 2, {2, 2}, dtype), tp_one_each))
      << TinyArchName(arch) << ": --tp 2 --threads 4 differs from --tp 2 --threads 2";
}

INSTANTIATE_TEST_SUITE_P(ArchsAndDtypes, ThreadsBitwiseTest,
                         ::testing::Values(Case{TinyArch::kBamba, DType::kF32},
                                           Case{TinyArch::kBamba, DType::kBF16},
                                           Case{TinyArch::kGraniteMoe, DType::kF32},
                                           Case{TinyArch::kGraniteMoe, DType::kBF16},
                                           Case{TinyArch::kNemotron, DType::kF32},
                                           Case{TinyArch::kNemotron, DType::kBF16}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(TinyArchName(info.param.arch)) +
                                  (info.param.dtype == DType::kBF16 ? "_bf16" : "_fp32");
                         });

TEST(SplitThreadsTest, SplitsEvenlyWithTheRemainderOnTheFirstRanksAndAtLeastOneEach) {
  EXPECT_EQ(SplitThreads(4, 2), (std::vector<int>{2, 2}));
  EXPECT_EQ(SplitThreads(5, 2), (std::vector<int>{3, 2}));
  EXPECT_EQ(SplitThreads(7, 3), (std::vector<int>{3, 2, 2}));
  EXPECT_EQ(SplitThreads(1, 3), (std::vector<int>{1, 1, 1}));
  EXPECT_EQ(SplitThreads(8, 1), (std::vector<int>{8}));
}

TEST(TensorParallelThreadsTest, RankThreadsOfTheWrongSizeOrBelowOneAreRefused) {
  const ModelConfig config = TinyConfig();
  const RandomTensorSource source(config, 1);
  for (const std::vector<int>& bad : {std::vector<int>{2}, std::vector<int>{2, 0}}) {
    auto runner = TpRunner::Create(config, source, {.tp = 2, .rank_threads = bad});
    EXPECT_EQ(runner.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(runner.status().message().find("rank_threads"), std::string::npos) << runner.status();
  }
}

}  // namespace
}  // namespace hc::model
