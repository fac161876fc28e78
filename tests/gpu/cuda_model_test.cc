// The hybrid model on the CUDA backend: logits against the CPU backend,
// cached-versus-uncached exactness (prefill(k) + continuation == one
// prefill), the tail copy-on-write of a KV block and the Mamba slot copy
// through BackendCacheMemory, and NCCL tensor parallel (tp=2 == tp=1). Tests
// that need a device skip without one; the cache copy-on-write test also runs
// on the CPU backend (the same BackendCacheMemory over either backend).
#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/unit/worker/model/test_model.h"
#include "worker/model/tensor_parallel_model.h"
#include "worker/runtime/backend_cache_memory.h"
#include "worker/runtime/cpu_backend.h"
#include "worker/runtime/cuda_backend.h"
#if defined(HC_HAVE_NCCL)
#include "worker/runtime/nccl_communicator.h"
#endif

namespace hc::model {
namespace {

using gpu_testing::MaxRelError;
using testing::LoadF32ForTest;
using testing::RandomTensorSource;
using testing::TinyConfig;

constexpr int kBlockSize = 16;
constexpr int kNumBlocks = 128;
constexpr int kNumSlots = 8;
constexpr double kTol = 1e-4;

std::vector<int32_t> Tokens(int n, uint32_t seed, int vocab) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

// A TensorParallelModel over `tp` backends (one per rank) and a
// BackendCacheMemory over the same backends.
struct Runner {
  std::vector<std::unique_ptr<runtime::Backend>> backends;
  std::unique_ptr<TensorParallelModel> model;
  std::unique_ptr<runtime::BackendCacheMemory> cache;
  int next_block = 0;

  std::vector<float> Forward(const ForwardBatch& batch) {
    std::vector<float> logits;
    const absl::Status st = model->Forward(batch, cache.get(), &logits);
    EXPECT_TRUE(st.ok()) << st;
    return logits;
  }
};

enum class Device { kCpu, kCuda };

std::unique_ptr<Runner> MakeRunner(const ModelConfig& config, const TensorSource& source,
                                   Device device, int tp,
                                   runtime::DType dtype = runtime::DType::kF32) {
  auto r = std::make_unique<Runner>();
  std::vector<runtime::Backend*> raw;
  for (int i = 0; i < tp; ++i) {
    if (device == Device::kCuda) {
      auto b = runtime::CreateCudaBackend({.device = i});
      EXPECT_TRUE(b.ok()) << b.status();
      if (!b.ok()) return nullptr;
      r->backends.push_back(std::move(b).value());
    } else {
      r->backends.push_back(runtime::CreateCpuBackend().value());
    }
    raw.push_back(r->backends.back().get());
  }
  TensorParallelModelOptions options{
      .tp_size = tp, .rank_backends = raw, .weight_dtype = dtype, .kv_dtype = dtype};
#if defined(HC_HAVE_NCCL)
  if (device == Device::kCuda && tp > 1) {
    options.make_communicators = [&raw](int) {
      std::vector<runtime::CudaBackend*> cuda;
      for (runtime::Backend* b : raw) cuda.push_back(static_cast<runtime::CudaBackend*>(b));
      return runtime::CreateNcclCommunicators(cuda);
    };
  }
#endif
  auto model = TensorParallelModel::Create(
      options, config, [&](std::string_view name, const std::vector<int64_t>& shape) {
        return LoadF32ForTest(source, name, shape);
      });
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return nullptr;
  r->model = std::move(model).value();
  auto cache = runtime::BackendCacheMemory::Create(r->model->KvLayout(kNumBlocks, kBlockSize),
                                                   r->model->MambaLayout(kNumSlots), raw);
  EXPECT_TRUE(cache.ok()) << cache.status();
  if (!cache.ok()) return nullptr;
  r->cache = std::move(cache).value();
  return r;
}

// One conversation's cache handles.
struct Seq {
  std::vector<int32_t> table;
  int32_t slot = 0;
  int computed = 0;
};

SequenceInput Input(Runner& r, Seq& s, std::span<const int32_t> tokens, bool logits = true) {
  const int ctx = s.computed + static_cast<int>(tokens.size());
  while (static_cast<int>(s.table.size()) * kBlockSize < ctx) s.table.push_back(r.next_block++);
  return {.token_ids = tokens,
          .num_computed_tokens = s.computed,
          .block_table = s.table,
          .mamba_slot = s.slot,
          .need_logits = logits};
}

// Runs a mixed batch: prefills of two sequences, then decode steps of both
// (the single-step kernels), then a mixed prefill + decode step. Returns all
// logits in order.
std::vector<std::vector<float>> Script(Runner& r, const ModelConfig& c) {
  std::vector<std::vector<float>> out;
  Seq a{.slot = 3}, b{.slot = 1};
  const auto pa = Tokens(13, 1, c.vocab_size), pb = Tokens(37, 2, c.vocab_size);
  out.push_back(r.Forward({{Input(r, a, pa), Input(r, b, pb)}}));
  a.computed += pa.size();
  b.computed += pb.size();
  for (int step = 0; step < 3; ++step) {
    const auto ta = Tokens(1, 10 + step, c.vocab_size), tb = Tokens(1, 20 + step, c.vocab_size);
    out.push_back(r.Forward({{Input(r, a, ta), Input(r, b, tb)}}));
    a.computed += 1;
    b.computed += 1;
  }
  const auto ca = Tokens(19, 30, c.vocab_size), tb = Tokens(1, 31, c.vocab_size);
  out.push_back(r.Forward({{Input(r, a, ca), Input(r, b, tb)}}));
  return out;
}

// param: mamba groups, architecture
class CudaModelTest : public ::testing::TestWithParam<std::tuple<int, testing::TinyArch>> {
 protected:
  void SetUp() override { HC_SKIP_WITHOUT_CUDA_DEVICE(1); }
  static ModelConfig Config() {
    return TinyConfig(std::get<0>(GetParam()), std::get<1>(GetParam()));
  }
};

TEST_P(CudaModelTest, LogitsMatchCpuBackend) {
  const ModelConfig c = Config();
  RandomTensorSource source(c, 7);
  auto cpu = MakeRunner(c, source, Device::kCpu, 1);
  auto gpu = MakeRunner(c, source, Device::kCuda, 1);
  ASSERT_TRUE(cpu && gpu);
  const auto want = Script(*cpu, c);
  const auto got = Script(*gpu, c);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(want[i].size(), 2u * c.vocab_size);
    EXPECT_LE(MaxRelError(got[i], want[i]), kTol) << "step " << i;
  }
}

// bf16 weights and KV cache as stored (cuBLAS bf16 GEMMs, bf16 paged
// attention) against the CPU backend's bf16 path on the same bf16-representable
// weights. Both round activations to bf16 before each GEMM, so an fp32-level
// difference in summation order now and then flips one activation's rounding
// by one bf16 ulp: the tolerance is the CPU's own decode-vs-prefill bf16
// bound (kBf16Tol of tests/unit/worker/model/hybrid_model_test.cc, 3e-3), and
// the greedy token of every row must agree.
TEST_P(CudaModelTest, Bf16LogitsMatchCpuBackendAndGreedyTokensAgree) {
  constexpr double kBf16Tol = 3e-3;
  const ModelConfig c = Config();
  RandomTensorSource source(c, 9, /*bf16_representable=*/true);
  auto cpu = MakeRunner(c, source, Device::kCpu, 1, runtime::DType::kBF16);
  auto gpu = MakeRunner(c, source, Device::kCuda, 1, runtime::DType::kBF16);
  ASSERT_TRUE(cpu && gpu);
  const auto want = Script(*cpu, c);
  const auto got = Script(*gpu, c);
  ASSERT_EQ(got.size(), want.size());
  const auto argmax = [&](const std::vector<float>& l, size_t row) {
    const auto b = l.begin() + static_cast<int64_t>(row) * c.vocab_size;
    return std::max_element(b, b + c.vocab_size) - b;
  };
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i].size(), want[i].size());
    EXPECT_LE(MaxRelError(got[i], want[i]), kBf16Tol) << "step " << i;
    for (size_t row = 0; row < want[i].size() / c.vocab_size; ++row) {
      EXPECT_EQ(argmax(got[i], row), argmax(want[i], row)) << "step " << i << " row " << row;
    }
  }
}

// prefill(k) + continuation from the committed state equals one prefill, for
// split points inside and at block and chunk boundaries.
TEST_P(CudaModelTest, CachedContinuationMatchesOnePrefill) {
  const ModelConfig c = Config();
  RandomTensorSource source(c, 8);
  auto gpu = MakeRunner(c, source, Device::kCuda, 1);
  ASSERT_TRUE(gpu);
  const auto tokens = Tokens(45, 3, c.vocab_size);
  Seq whole{.slot = 0};
  ASSERT_TRUE(gpu->cache->ZeroMambaSlot(0).ok());
  const auto want = gpu->Forward({{Input(*gpu, whole, tokens)}});
  for (int k : {1, 8, 16, 17, 31, 44}) {
    SCOPED_TRACE(k);
    Seq s{.slot = 2};
    ASSERT_TRUE(gpu->cache->ZeroMambaSlot(2).ok());
    const std::span<const int32_t> all(tokens);
    gpu->Forward({{Input(*gpu, s, all.first(k))}});
    s.computed = k;
    const auto got = gpu->Forward({{Input(*gpu, s, all.subspan(k))}});
    EXPECT_LE(MaxRelError(got, want), kTol);
  }
}

INSTANTIATE_TEST_SUITE_P(GroupsAndArchs, CudaModelTest,
                         ::testing::Combine(::testing::Values(1, 2),
                                            ::testing::Values(testing::TinyArch::kBamba,
                                                              testing::TinyArch::kGranite,
                                                              testing::TinyArch::kGraniteMoe,
                                                              testing::TinyArch::kNemotron)),
                         [](const auto& info) {
                           return std::string(testing::TinyArchName(std::get<1>(info.param))) +
                                  "_groups" + std::to_string(std::get<0>(info.param));
                         });

// Tail copy-on-write and Mamba slot copy: a fork continues exactly like the
// original, the copied rows are byte-equal, rows past the copied tail and
// other blocks are untouched, and ZeroMambaSlot clears the slot.
class CacheCopyTest : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (GetParam() == Device::kCuda) HC_SKIP_WITHOUT_CUDA_DEVICE(1);
  }
};

std::vector<float> Fetch(runtime::Backend& b, const float* p, size_t n) {
  std::vector<float> host(n);
  EXPECT_TRUE(b.Synchronize().ok());
  EXPECT_TRUE(b.CopyDeviceToHost(host.data(), p, n * sizeof(float)).ok());
  return host;
}

TEST_P(CacheCopyTest, ForkOfCommittedStateContinuesIdentically) {
  const ModelConfig c = TinyConfig(1);
  RandomTensorSource source(c, 9);
  auto r = MakeRunner(c, source, GetParam(), 1);
  ASSERT_TRUE(r);
  runtime::CacheMemory& mem = *r->cache;
  runtime::Backend& backend = *r->backends[0];
  Seq orig{.slot = 0};
  ASSERT_TRUE(mem.ZeroMambaSlot(0).ok());
  const auto prompt = Tokens(20, 4, c.vocab_size);  // block 1 holds 4 tokens
  r->Forward({{Input(*r, orig, prompt)}});
  orig.computed = 20;
  // Fork: share block 0, copy the 4-token tail of block 1, copy the state.
  const int32_t tail_src = orig.table[1], tail_dst = 100;
  const auto& kv = mem.kv_layout();
  const size_t block = kv.BlockElems(), row = block / kBlockSize;
  const auto before = Fetch(backend, static_cast<const float*>(mem.k(0, 0)), kv.num_blocks * block);
  ASSERT_TRUE(mem.CopyKvBlock(tail_src, tail_dst, 4).ok());
  ASSERT_TRUE(mem.CopyMambaSlot(0, 5).ok());
  const auto after = Fetch(backend, static_cast<const float*>(mem.k(0, 0)), kv.num_blocks * block);
  for (size_t i = 0; i < after.size(); ++i) {
    const bool copied = i >= tail_dst * block && i < tail_dst * block + 4 * row;
    const float expected = copied ? before[tail_src * block + (i - tail_dst * block)] : before[i];
    ASSERT_EQ(after[i], expected) << "element " << i;
  }
  const auto& m = mem.mamba_layout();
  const auto ssm = Fetch(backend, mem.ssm(0, 0), m.num_slots * m.SsmSlotElems());
  const auto conv = Fetch(backend, mem.conv(0, 0), m.num_slots * m.ConvSlotElems());
  for (size_t i = 0; i < m.SsmSlotElems(); ++i) {
    ASSERT_EQ(ssm[5 * m.SsmSlotElems() + i], ssm[i]);
  }
  for (size_t i = 0; i < m.ConvSlotElems(); ++i) {
    ASSERT_EQ(conv[5 * m.ConvSlotElems() + i], conv[i]);
  }
  Seq fork{.table = {orig.table[0], tail_dst}, .slot = 5, .computed = 20};
  const auto next = Tokens(9, 5, c.vocab_size);
  const auto from_fork = r->Forward({{Input(*r, fork, next)}});
  const auto from_orig = r->Forward({{Input(*r, orig, next)}});
  EXPECT_EQ(from_fork, from_orig);
  ASSERT_TRUE(mem.ZeroMambaSlot(5).ok());
  for (float x : Fetch(backend, mem.ssm(0, 0) + 5 * m.SsmSlotElems(), m.SsmSlotElems())) {
    ASSERT_EQ(x, 0.0f);
  }
  EXPECT_FALSE(mem.CopyKvBlock(3, 3, 1).ok());
  EXPECT_FALSE(mem.CopyKvBlock(0, 1, kBlockSize + 1).ok());
  EXPECT_FALSE(mem.CopyMambaSlot(0, kNumSlots).ok());
  EXPECT_FALSE(mem.ZeroMambaSlot(-1).ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, CacheCopyTest, ::testing::Values(Device::kCpu, Device::kCuda),
                         [](const auto& info) {
                           return std::string(info.param == Device::kCpu ? "Cpu" : "Cuda");
                         });

TEST(CudaTensorParallelTest, NcclTp2MatchesTp1) {
#if !defined(HC_HAVE_NCCL)
  GTEST_SKIP() << "built without NCCL";
#else
  HC_SKIP_WITHOUT_CUDA_DEVICE(2);
  for (int groups : {1, 2}) {
    SCOPED_TRACE(groups);
    const ModelConfig c = TinyConfig(groups);
    RandomTensorSource source(c, 11);
    auto tp1 = MakeRunner(c, source, Device::kCuda, 1);
    auto tp2 = MakeRunner(c, source, Device::kCuda, 2);
    ASSERT_TRUE(tp1 && tp2);
    const auto want = Script(*tp1, c);
    const auto got = Script(*tp2, c);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_LE(MaxRelError(got[i], want[i]), kTol) << "step " << i;
    }
  }
#endif
}

}  // namespace
}  // namespace hc::model
