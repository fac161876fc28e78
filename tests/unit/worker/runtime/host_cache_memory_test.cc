#include "worker/runtime/host_cache_memory.h"

#include "gtest/gtest.h"

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

TEST(HostCacheMemoryTest, CopyKvBlockCopiesOnlyRequestedRowsOnEveryRankAndLayer) {
  auto mem = HostCacheMemory::Create(SmallKv(), SmallMamba(), 2).value();
  const size_t block = mem->kv_layout().BlockElems();
  const size_t row = 2 * 3;
  for (int r = 0; r < 2; ++r) {
    for (int l = 0; l < 2; ++l) {
      for (size_t i = 0; i < block; ++i) {
        mem->k(r, l)[1 * block + i] = 100.0f * r + 10.0f * l + i;
        mem->v(r, l)[1 * block + i] = -(100.0f * r + 10.0f * l + i);
      }
    }
  }
  ASSERT_TRUE(mem->CopyKvBlock(1, 3, 3).ok());
  for (int r = 0; r < 2; ++r) {
    for (int l = 0; l < 2; ++l) {
      for (size_t i = 0; i < block; ++i) {
        const float want = i < 3 * row ? 100.0f * r + 10.0f * l + i : 0.0f;
        EXPECT_EQ(mem->k(r, l)[3 * block + i], want);
        EXPECT_EQ(mem->v(r, l)[3 * block + i], -want);
      }
    }
  }
}

TEST(HostCacheMemoryTest, CopyAndZeroMambaSlot) {
  auto mem = HostCacheMemory::Create(SmallKv(), SmallMamba(), 1).value();
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

TEST(HostCacheMemoryTest, RejectsOutOfRangeCopies) {
  auto mem = HostCacheMemory::Create(SmallKv(), SmallMamba(), 1).value();
  EXPECT_EQ(mem->CopyKvBlock(0, 4, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mem->CopyKvBlock(0, 0, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mem->CopyKvBlock(0, 1, 5).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mem->CopyMambaSlot(0, 3).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HostCacheMemory::Create({.dtype = DType::kBF16}, SmallMamba(), 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hc::runtime
