// DeviceGroup: the CPU group shares one backend over tp ranks with working
// thread communicators and host cache memory; asking for CUDA without a
// usable device (or in a build without CUDA) fails with a clear status
// instead of crashing.
#include "worker/runtime/device_group.h"

#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hc::runtime {
namespace {

TEST(DeviceGroupTest, ParsesDeviceNames) {
  EXPECT_EQ(ParseBackendKind("cpu").value(), BackendKind::kCpu);
  EXPECT_EQ(ParseBackendKind("cuda").value(), BackendKind::kCuda);
  EXPECT_EQ(ParseBackendKind("gpu").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DeviceGroupTest, RejectsNonPositiveTp) {
  EXPECT_EQ(CreateDeviceGroup({.kind = BackendKind::kCpu, .tp = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DeviceGroupTest, CpuGroupSharesOneBackendAndCommunicatorsReduce) {
  auto group = CreateDeviceGroup({.kind = BackendKind::kCpu, .tp = 3}).value();
  EXPECT_EQ(group->kind(), BackendKind::kCpu);
  const auto backends = group->rank_backends();
  ASSERT_EQ(backends.size(), 3u);
  EXPECT_EQ(backends[0], backends[2]);
  auto comms = group->communicator_factory()(3).value();
  ASSERT_EQ(comms.size(), 3u);
  std::vector<std::vector<float>> data = {{1, 2}, {10, 20}, {100, 200}};
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] { EXPECT_TRUE(comms[r]->AllReduceSum(data[r].data(), 2).ok()); });
  }
  for (auto& t : threads) t.join();
  for (const auto& d : data) EXPECT_EQ(d, (std::vector<float>{111, 222}));
  auto mem = group->CreateCacheMemory(
      {.num_layers = 1, .num_blocks = 4, .block_size = 2, .num_kv_heads = 1, .head_dim = 4},
      {.num_layers = 1,
       .num_slots = 2,
       .conv_dim = 3,
       .conv_width = 4,
       .num_heads = 1,
       .head_dim = 2,
       .state_size = 2});
  ASSERT_TRUE(mem.ok()) << mem.status();
  EXPECT_EQ((*mem)->num_ranks(), 3);
  EXPECT_NE((*mem)->k(2, 0), nullptr);
}

KvLayout OneLayerKv(int num_blocks) {
  return {
      .num_layers = 1, .num_blocks = num_blocks, .block_size = 2, .num_kv_heads = 1, .head_dim = 4};
}
MambaLayout OneLayerMamba(int num_slots) {
  return {.num_layers = 1,
          .num_slots = num_slots,
          .conv_dim = 3,
          .conv_width = 4,
          .num_heads = 1,
          .head_dim = 2,
          .state_size = 2};
}

TEST(DeviceGroupTest, CpuCacheMemoryIsCountedByTheBackendAndReleased) {
  auto group = CreateDeviceGroup({.kind = BackendKind::kCpu, .tp = 2}).value();
  Backend* backend = group->rank_backends()[0];
  const size_t before = backend->allocated_bytes();
  auto mem = group->CreateCacheMemory(OneLayerKv(4), OneLayerMamba(2));
  ASSERT_TRUE(mem.ok()) << mem.status();
  // Two ranks on the shared backend, each: K and V (4 blocks x 2 tokens x 4),
  // conv (2 slots x 3 x 3) and SSM (2 slots x 1 x 2 x 2), fp32.
  const size_t per_rank = (2 * 4 * 2 * 4 + 2 * 3 * 3 + 2 * 1 * 2 * 2) * sizeof(float);
  EXPECT_EQ(backend->allocated_bytes() - before, 2 * per_rank);
  mem->reset();
  EXPECT_EQ(backend->allocated_bytes(), before);
}

TEST(DeviceGroupTest, CpuCacheMemoryRefusesZeroBlocksOrSlots) {
  auto group = CreateDeviceGroup({.kind = BackendKind::kCpu, .tp = 1}).value();
  const auto no_blocks = group->CreateCacheMemory(OneLayerKv(0), OneLayerMamba(2));
  EXPECT_EQ(no_blocks.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_blocks.status().message(), ::testing::HasSubstr("num_blocks=0"));
  const auto no_slots = group->CreateCacheMemory(OneLayerKv(4), OneLayerMamba(0));
  EXPECT_EQ(no_slots.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_slots.status().message(), ::testing::HasSubstr("num_slots=0"));
}

TEST(DeviceGroupTest, CudaWithoutDeviceOrSupportFailsCleanly) {
  auto group = CreateDeviceGroup({.kind = BackendKind::kCuda, .tp = 1});
  if (group.ok()) GTEST_SKIP() << "a CUDA device is present; the failure path is not reachable";
  if (BuiltWithCuda()) {
    EXPECT_EQ(group.status().code(), absl::StatusCode::kUnavailable) << group.status();
  } else {
    EXPECT_EQ(group.status().code(), absl::StatusCode::kUnimplemented) << group.status();
  }
}

}  // namespace
}  // namespace hc::runtime
