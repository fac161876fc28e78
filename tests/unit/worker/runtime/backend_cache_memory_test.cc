// BackendCacheMemory on the CPU backend (the CUDA backend runs the same code;
// tests/gpu covers it on a device): block and slot copies, validation that
// allocates nothing, and allocation through Backend::Allocate, so the
// backend's allocated_bytes() and limit see the cache.
#include "worker/runtime/backend_cache_memory.h"

#include <memory>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/runtime/cpu_backend.h"

namespace hc::runtime {
namespace {

KvLayout SmallKv() {
  return {.num_layers = 2, .num_blocks = 4, .block_size = 4, .num_kv_heads = 2, .head_dim = 3};
}
MambaLayout SmallMamba() {
  return {.num_layers = 2,
          .num_slots = 3,
          .conv_dim = 5,
          .conv_width = 4,
          .num_heads = 2,
          .head_dim = 2,
          .state_size = 3};
}

// Bytes of one rank's tensors of SmallKv() and SmallMamba(), fp32.
constexpr size_t kSmallRankBytes =
    (2 * 2 * 4 * 4 * 2 * 3 + 2 * 3 * 5 * 3 + 2 * 3 * 2 * 2 * 3) * sizeof(float);

float* K(BackendCacheMemory& mem, int r, int l) { return static_cast<float*>(mem.k(r, l)); }
float* V(BackendCacheMemory& mem, int r, int l) { return static_cast<float*>(mem.v(r, l)); }

class BackendCacheMemoryTest : public ::testing::Test {
 protected:
  std::unique_ptr<BackendCacheMemory> Make(int num_ranks) {
    return BackendCacheMemory::Create(SmallKv(), SmallMamba(),
                                      std::vector<Backend*>(num_ranks, backend_.get()))
        .value();
  }
  std::unique_ptr<Backend> backend_ = CreateCpuBackend().value();
};

TEST_F(BackendCacheMemoryTest, CopyKvBlockCopiesOnlyRequestedRowsOnEveryRankAndLayer) {
  auto mem = Make(2);
  const size_t block = mem->kv_layout().BlockElems();
  const size_t row = 2 * 3;
  for (int r = 0; r < 2; ++r) {
    for (int l = 0; l < 2; ++l) {
      for (size_t i = 0; i < block; ++i) {
        K(*mem, r, l)[1 * block + i] = 100.0f * r + 10.0f * l + i;
        V(*mem, r, l)[1 * block + i] = -(100.0f * r + 10.0f * l + i);
      }
    }
  }
  ASSERT_TRUE(mem->CopyKvBlock(1, 3, 3).ok());
  for (int r = 0; r < 2; ++r) {
    for (int l = 0; l < 2; ++l) {
      for (size_t i = 0; i < block; ++i) {
        const float want = i < 3 * row ? 100.0f * r + 10.0f * l + i : 0.0f;
        EXPECT_EQ(K(*mem, r, l)[3 * block + i], want);
        EXPECT_EQ(V(*mem, r, l)[3 * block + i], -want);
      }
    }
  }
}

TEST_F(BackendCacheMemoryTest, CopyAndZeroMambaSlot) {
  auto mem = Make(1);
  const auto& m = mem->mamba_layout();
  for (int l = 0; l < 2; ++l) {
    for (size_t i = 0; i < m.ConvSlotElems(); ++i) mem->conv(0, l)[i] = 1.0f + i;
    for (size_t i = 0; i < m.SsmSlotElems(); ++i) mem->ssm(0, l)[i] = 2.0f + i;
  }
  ASSERT_TRUE(mem->CopyMambaSlot(0, 2).ok());
  for (int l = 0; l < 2; ++l) {
    for (size_t i = 0; i < m.ConvSlotElems(); ++i)
      EXPECT_EQ(mem->conv(0, l)[2 * m.ConvSlotElems() + i], 1.0f + i);
    for (size_t i = 0; i < m.SsmSlotElems(); ++i)
      EXPECT_EQ(mem->ssm(0, l)[2 * m.SsmSlotElems() + i], 2.0f + i);
  }
  ASSERT_TRUE(mem->ZeroMambaSlot(0).ok());
  EXPECT_EQ(mem->conv(0, 1)[0], 0.0f);
  EXPECT_EQ(mem->ssm(0, 1)[0], 0.0f);
  EXPECT_EQ(mem->conv(0, 1)[2 * m.ConvSlotElems()], 1.0f);  // the copy is independent
}

TEST_F(BackendCacheMemoryTest, RanksSharingOneBackendHaveSeparateTensors) {
  auto mem = Make(2);
  K(*mem, 0, 0)[0] = 1.0f;
  mem->ssm(0, 0)[0] = 2.0f;
  EXPECT_EQ(K(*mem, 1, 0)[0], 0.0f);
  EXPECT_EQ(mem->ssm(1, 0)[0], 0.0f);
}

TEST_F(BackendCacheMemoryTest, RejectsOutOfRangeCopies) {
  auto mem = Make(1);
  EXPECT_EQ(mem->CopyKvBlock(0, 4, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mem->CopyKvBlock(0, 0, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mem->CopyKvBlock(0, 1, 5).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mem->CopyMambaSlot(0, 3).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mem->ZeroMambaSlot(3).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(BackendCacheMemoryTest, EveryTensorIsCountedByTheBackendUntilReleased) {
  auto mem = Make(2);
  EXPECT_EQ(mem->TotalBytes(), 2 * kSmallRankBytes);
  EXPECT_EQ(backend_->allocated_bytes(), 2 * kSmallRankBytes);
  mem.reset();
  EXPECT_EQ(backend_->allocated_bytes(), 0u);
}

TEST_F(BackendCacheMemoryTest, BadLayoutsAreRefusedWithoutAllocating) {
  struct Case {
    std::string_view name;
    KvLayout kv;
    MambaLayout mamba;
    const char* says;
  };
  KvLayout no_blocks = SmallKv();
  no_blocks.num_blocks = 0;
  KvLayout no_blocks_no_layers = no_blocks;
  no_blocks_no_layers.num_layers = 0;
  MambaLayout no_slots = SmallMamba();
  no_slots.num_slots = 0;
  KvLayout fp16 = SmallKv();
  fp16.dtype = DType::kF16;
  MambaLayout bf16_conv = SmallMamba();
  bf16_conv.conv_dtype = DType::kBF16;
  KvLayout no_heads = SmallKv();
  no_heads.num_kv_heads = 0;
  MambaLayout no_state = SmallMamba();
  no_state.state_size = 0;
  const std::vector<Case> cases = {
      {"zero blocks", no_blocks, SmallMamba(), "num_blocks=0"},
      {"zero blocks, no attention layers", no_blocks_no_layers, SmallMamba(), "num_blocks=0"},
      {"zero slots", SmallKv(), no_slots, "num_slots=0"},
      {"fp16 KV", fp16, SmallMamba(), "KV cache dtype float16 is not supported"},
      {"bf16 conv state", SmallKv(), bf16_conv, "the Mamba states are float32"},
      {"no kv heads", no_heads, SmallMamba(), "kv_heads=0"},
      {"no state", SmallKv(), no_state, "state_size=0"},
  };
  for (const Case& c : cases) {
    const auto mem = BackendCacheMemory::Create(c.kv, c.mamba, {backend_.get()});
    EXPECT_EQ(mem.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(mem.status().message(), ::testing::HasSubstr(c.says)) << c.name;
    EXPECT_EQ(backend_->allocated_bytes(), 0u) << c.name;
  }
}

TEST_F(BackendCacheMemoryTest, Bf16KvHalvesKvBytesAndCopiesWholeBf16Rows) {
  KvLayout kv = SmallKv();
  kv.dtype = DType::kBF16;
  auto mem = BackendCacheMemory::Create(kv, SmallMamba(), {backend_.get()}).value();
  const size_t kv_elems = 2 * 2 * 4 * 4 * 2 * 3;  // layers * (K, V) * blocks * block elems
  EXPECT_EQ(mem->TotalBytes(), kSmallRankBytes - kv_elems * (sizeof(float) - sizeof(uint16_t)));
  const size_t block = kv.BlockElems();
  const size_t row = 2 * 3;
  for (int l = 0; l < 2; ++l) {
    auto* k = static_cast<uint16_t*>(mem->k(0, l));
    auto* v = static_cast<uint16_t*>(mem->v(0, l));
    for (size_t i = 0; i < block; ++i) {
      k[1 * block + i] = static_cast<uint16_t>(1000 + i);
      v[1 * block + i] = static_cast<uint16_t>(2000 + i);
    }
  }
  ASSERT_TRUE(mem->CopyKvBlock(1, 2, 3).ok());
  for (int l = 0; l < 2; ++l) {
    const auto* k = static_cast<const uint16_t*>(mem->k(0, l));
    const auto* v = static_cast<const uint16_t*>(mem->v(0, l));
    for (size_t i = 0; i < block; ++i) {
      EXPECT_EQ(k[2 * block + i], i < 3 * row ? 1000 + i : 0) << "layer " << l << " elem " << i;
      EXPECT_EQ(v[2 * block + i], i < 3 * row ? 2000 + i : 0) << "layer " << l << " elem " << i;
      EXPECT_EQ(k[3 * block + i], 0) << "the next block is untouched";
    }
  }
}

TEST_F(BackendCacheMemoryTest, MissingBackendsAreRefused) {
  EXPECT_EQ(BackendCacheMemory::Create(SmallKv(), SmallMamba(), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BackendCacheMemory::Create(SmallKv(), SmallMamba(), {backend_.get(), nullptr})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backend_->allocated_bytes(), 0u);
}

TEST_F(BackendCacheMemoryTest, BackendLimitFailsCreationAndReleasesWhatItTook) {
  auto limited = CreateCpuBackend({.kernels = {}, .max_bytes = kSmallRankBytes * 3 / 2}).value();
  const auto mem =
      BackendCacheMemory::Create(SmallKv(), SmallMamba(), {limited.get(), limited.get()});
  EXPECT_EQ(mem.status().code(), absl::StatusCode::kResourceExhausted) << mem.status();
  EXPECT_EQ(limited->allocated_bytes(), 0u);
  EXPECT_TRUE(BackendCacheMemory::Create(SmallKv(), SmallMamba(), {limited.get()}).ok());
}

}  // namespace
}  // namespace hc::runtime
