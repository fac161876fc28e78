#include "worker/runtime/cpu_backend.h"

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace hc::runtime {
namespace {

TEST(CpuBackendTest, AllocateIsAlignedTrackedAndFreed) {
  auto backend = CreateCpuBackend().value();
  EXPECT_EQ(backend->kind(), BackendKind::kCpu);
  void* a = backend->Allocate(100).value();
  void* b = backend->Allocate(3).value();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % 64, 0u);
  EXPECT_EQ(backend->allocated_bytes(), 103u);
  backend->Free(a);
  EXPECT_EQ(backend->allocated_bytes(), 3u);
  backend->Free(b);
  backend->Free(nullptr);
  EXPECT_EQ(backend->allocated_bytes(), 0u);
}

// The VmFlags of the mapping that holds `p` (/proc/self/smaps), "" if none.
std::string VmFlagsOf(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto addr = reinterpret_cast<uintptr_t>(p);
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    uintptr_t lo = 0, hi = 0;
    // A mapping's header ("lo-hi perms ..."); its attribute lines follow.
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " ", &lo, &hi) == 2) {
      inside = addr >= lo && addr < hi;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line;
  }
  return "";
}

TEST(CpuBackendTest, BuffersOfAHugePageOrMoreStartOnHugePageBoundariesAndAskForHugePages) {
  auto backend = CreateCpuBackend().value();
  constexpr size_t kHuge = size_t{2} << 20;
  for (const size_t bytes : {kHuge, 5 * kHuge + 3}) {
    void* p = backend->Allocate(bytes).value();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kHuge, 0u) << bytes;
    std::memset(p, 0x5A, bytes);  // all of it is usable
    EXPECT_EQ(static_cast<unsigned char*>(p)[bytes - 1], 0x5A);
    if (std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled").good()) {
      // MADV_HUGEPAGE shows as "hg" in the mapping's flags.
      EXPECT_NE(VmFlagsOf(p).find(" hg"), std::string::npos) << VmFlagsOf(p);
    }
    EXPECT_EQ(backend->allocated_bytes(), bytes);
    backend->Free(p);
  }
  EXPECT_EQ(backend->allocated_bytes(), 0u);
}

TEST(CpuBackendTest, ZeroBytesAndOverLimitAreErrors) {
  auto backend = CreateCpuBackend({.kernels = {}, .max_bytes = 1000}).value();
  EXPECT_EQ(backend->Allocate(0).status().code(), absl::StatusCode::kInvalidArgument);
  void* a = backend->Allocate(600).value();
  EXPECT_EQ(backend->Allocate(600).status().code(), absl::StatusCode::kResourceExhausted);
  backend->Free(a);
  EXPECT_TRUE(backend->Allocate(600).ok());
}

TEST(CpuBackendTest, CopiesAndMemsetRoundTrip) {
  auto backend = CreateCpuBackend().value();
  auto dev = DeviceBuffer::Create(backend.get(), 16 * sizeof(float)).value();
  auto dev2 = DeviceBuffer::Create(backend.get(), 16 * sizeof(float)).value();
  std::vector<float> host(16), back(16, -1.0f);
  for (int i = 0; i < 16; ++i) host[i] = i * 0.5f;
  ASSERT_TRUE(backend->CopyHostToDevice(dev.data(), host.data(), 64).ok());
  ASSERT_TRUE(backend->CopyDeviceToDevice(dev2.data(), dev.data(), 64).ok());
  ASSERT_TRUE(backend->Memset(dev.data(), 0, 64).ok());
  ASSERT_TRUE(backend->Synchronize().ok());
  ASSERT_TRUE(backend->CopyDeviceToHost(back.data(), dev2.data(), 64).ok());
  EXPECT_EQ(back, host);
  ASSERT_TRUE(backend->CopyDeviceToHost(back.data(), dev.data(), 64).ok());
  EXPECT_EQ(back, std::vector<float>(16, 0.0f));
}

TEST(CpuBackendTest, DeviceBufferReleasesOnDestructionAndMove) {
  auto backend = CreateCpuBackend().value();
  {
    auto a = DeviceBuffer::Create(backend.get(), 128).value();
    DeviceBuffer b = std::move(a);
    EXPECT_EQ(a.data(), nullptr);
    EXPECT_EQ(b.size(), 128u);
    EXPECT_EQ(backend->allocated_bytes(), 128u);
    b = DeviceBuffer::Create(backend.get(), 64).value();
    EXPECT_EQ(backend->allocated_bytes(), 64u);
  }
  EXPECT_EQ(backend->allocated_bytes(), 0u);
}

TEST(CpuBackendTest, ConcurrentAllocationsFromRankThreadsAreAccounted) {
  auto backend = CreateCpuBackend().value();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        void* p = backend->Allocate(32 + i).value();
        backend->Free(p);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(backend->allocated_bytes(), 0u);
}

TEST(CpuBackendTest, ExposesCpuKernels) {
  auto backend = CreateCpuBackend({.kernels = {.gemm = kernels::CpuGemmImpl::kBlocked}}).value();
  const auto& k = backend->kernels();
  ASSERT_NE(k.gemm, nullptr);
  EXPECT_NE(std::string(k.gemm->name()).find("blocked"), std::string::npos);
  EXPECT_NE(k.attention, nullptr);
  EXPECT_NE(k.mamba2, nullptr);
}

}  // namespace
}  // namespace hc::runtime
