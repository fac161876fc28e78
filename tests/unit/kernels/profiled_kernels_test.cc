// The per-family kernel timer: a wrapped KernelSet forwards every call to the
// wrapped kernels (same results) and counts it under its own family only.
#include "kernels/profiled_kernels.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"

namespace hc::kernels {
namespace {

int Calls(const KernelProfile& p, KernelFamily f) {
  return static_cast<int>(p.Snapshot()[static_cast<int>(f)].calls);
}

TEST(ProfiledKernelsTest, WrappedCallsGiveTheSameResultAndCountUnderTheirFamily) {
  KernelProfile profile;
  KernelSet plain = CreateCpuKernels().value();
  KernelSet timed = ProfileKernels(CreateCpuKernels().value(), &profile);
  const std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {0.5f, -1, 2, 1, 1, 1};
  std::vector<float> c_plain(4), c_timed(4);
  GemmArgs args{.m = 2, .n = 2, .k = 3, .a = a.data(), .lda = 3, .b = b.data(), .ldb = 3};
  args.c = c_plain.data();
  args.ldc = 2;
  plain.gemm->Gemm(args);
  args.c = c_timed.data();
  timed.gemm->Gemm(args);
  timed.gemm->Gemm(args);
  EXPECT_EQ(c_plain, c_timed);
  std::vector<float> x = {1, -2, 3, -4};
  timed.elementwise->ScaleRows(1, 4, 2.0f, {x.data(), 4});
  EXPECT_EQ(x, (std::vector<float>{2, -4, 6, -8}));
  EXPECT_EQ(Calls(profile, KernelFamily::kGemm), 2);
  EXPECT_EQ(Calls(profile, KernelFamily::kElementwise), 1);
  EXPECT_EQ(Calls(profile, KernelFamily::kAttention), 0);
  EXPECT_EQ(Calls(profile, KernelFamily::kNorm), 0);
  profile.Reset();
  EXPECT_EQ(Calls(profile, KernelFamily::kGemm), 0);
}

TEST(ProfiledKernelsTest, FormatListsEveryFamilyAndTheRestOfTheWallTime) {
  KernelProfile profile;
  profile.Add(KernelFamily::kAttention, 3'000'000);
  profile.Add(KernelFamily::kSsdScan, 1'000'000);
  const std::string table = KernelProfile::Format(profile.Snapshot(), 8'000'000);
  EXPECT_NE(table.find("attention           1 calls        3.0 ms  37.5%"), std::string::npos)
      << table;
  EXPECT_NE(table.find("ssd_scan            1 calls        1.0 ms  12.5%"), std::string::npos)
      << table;
  EXPECT_NE(table.find("rest                0 calls        4.0 ms  50.0%"), std::string::npos)
      << table;
  EXPECT_NE(table.find("conv1d              0 calls        0.0 ms   0.0%"), std::string::npos)
      << table;
}

}  // namespace
}  // namespace hc::kernels
