// The bf16-weight GEMM paths (GemmKernel::GemmBf16), each forced in turn,
// against an fp64 reference over the same bf16-rounded operands.
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "tests/unit/kernels/gemm_test_util.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace hc::kernels {
namespace {

using testing::MaxRelError;
using testing::RandomVector;
using testing::ReferenceGemm;
using testing::RoundBf16;
using testing::RunGemm;
using testing::ToBf16;

// Every path this CPU can run, then kAuto.
std::vector<CpuBf16GemmImpl> Paths() {
  std::vector<CpuBf16GemmImpl> paths = {CpuBf16GemmImpl::kScalar};
  if (CpuHasAvx2Fma()) paths.push_back(CpuBf16GemmImpl::kWidenAvx2);
  if (CpuHasAvx512Bf16()) paths.push_back(CpuBf16GemmImpl::kAvx512Bf16);
  paths.push_back(CpuBf16GemmImpl::kAuto);
  return paths;
}

std::unique_ptr<GemmKernel> Make(CpuBf16GemmImpl path) {
  return CreateCpuGemm(CpuGemmImpl::kBlocked, path).value();
}

class GemmBf16ShapeTest : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

// A is bf16-representable here (rounding it changes nothing), so every path
// differs from the reference only by fp32 summation order.
TEST_P(GemmBf16ShapeTest, EveryPathMatchesReferenceWithPaddedLeadingDims) {
  const auto [m, n, k] = GetParam();
  const int lda = k + 3, ldb = k + 5, ldc = n + 2;
  const auto a = RoundBf16(RandomVector(static_cast<size_t>(m) * lda, 11 + m));
  const auto b = ToBf16(RandomVector(static_cast<size_t>(n) * ldb, 12 + n));
  const auto want = ReferenceGemm(m, n, k, a, lda, b, ldb);
  for (CpuBf16GemmImpl path : Paths()) {
    const std::string name = CpuBf16GemmName(path);
    const auto got = RunGemm(*Make(path), m, n, k, a, lda, b, ldb, ldc);
    EXPECT_LT(MaxRelError(got, want), 1e-5) << name << " m=" << m << " n=" << n << " k=" << k;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GemmBf16ShapeTest,
    ::testing::Values(std::make_tuple(1, 1, 1), std::make_tuple(1, 37, 64),
                      std::make_tuple(1, 9, 31), std::make_tuple(2, 17, 33),
                      std::make_tuple(3, 64, 100), std::make_tuple(4, 5, 8),
                      std::make_tuple(5, 16, 256), std::make_tuple(8, 13, 97),
                      std::make_tuple(7, 31, 257), std::make_tuple(13, 50, 300),
                      std::make_tuple(70, 33, 129), std::make_tuple(100, 301, 20),
                      std::make_tuple(64, 96, 600),
                      // the packed AVX-512 kernel's tails (m, n, odd k
                      // across 512-deep blocks, m across 128-row blocks)
                      std::make_tuple(9, 1, 1), std::make_tuple(17, 13, 3),
                      std::make_tuple(33, 25, 1031), std::make_tuple(131, 23, 515)));

TEST(GemmBf16Test, AccumulateAddsToExistingOutputOnEveryPath) {
  for (const int m : {2, 9, 67}) {
    const int n = 21, k = 270;
    const auto a = RoundBf16(RandomVector(m * k, 3));
    const auto b = ToBf16(RandomVector(n * k, 4));
    const auto c0 = RandomVector(m * n, 5);
    auto want = ReferenceGemm(m, n, k, a, k, b, k);
    for (size_t i = 0; i < want.size(); ++i) want[i] += c0[i];
    for (CpuBf16GemmImpl path : Paths()) {
      auto c = c0;
      Make(path)->GemmBf16({.m = m,
                            .n = n,
                            .k = k,
                            .a = a.data(),
                            .lda = k,
                            .b = b.data(),
                            .ldb = k,
                            .c = c.data(),
                            .ldc = n,
                            .accumulate = true});
      EXPECT_LT(MaxRelError(c, want), 1e-5) << CpuBf16GemmName(path) << " m=" << m;
    }
  }
}

// The contract: every path rounds fp32 activations to bf16, decode-sized and
// prefill-sized m alike.
TEST(GemmBf16Test, EveryPathRoundsActivationsToBf16) {
  for (const int m : {3, 40}) {
    const int n = 40, k = 200;
    const auto a = RandomVector(m * k, 21);  // not bf16-representable
    const auto b = ToBf16(RandomVector(n * k, 22));
    const auto exact = ReferenceGemm(m, n, k, a, k, b, k);
    const auto rounded = ReferenceGemm(m, n, k, RoundBf16(a), k, b, k);
    ASSERT_GT(MaxRelError(rounded, exact), 1e-4);  // the two references differ
    for (CpuBf16GemmImpl path : Paths()) {
      std::vector<float> c(m * n);
      Make(path)->GemmBf16({.m = m,
                            .n = n,
                            .k = k,
                            .a = a.data(),
                            .lda = k,
                            .b = b.data(),
                            .ldb = k,
                            .c = c.data(),
                            .ldc = n});
      EXPECT_LT(MaxRelError(c, rounded), 1e-5) << CpuBf16GemmName(path) << " m=" << m;
    }
  }
}

// Through a one-hot B each output is one rounded activation, so every path's
// rounding of A shows bit for bit: halfway cases of both parities go to the
// even neighbour, as F32ToBf16. k = 37: vectors of 16 and a scalar tail.
TEST(GemmBf16Test, EveryPathRoundsActivationTiesToEvenBitForBit) {
  const int k = 37, n = k;
  const uint32_t kLow[] = {0x8000, 0x7FFF, 0x8001, 0x0000, 0xFFFF};
  for (const int m : {1, 2, 3, 5, 8, 40}) {
    std::vector<float> a(static_cast<size_t>(m) * k);
    for (size_t i = 0; i < a.size(); ++i) {
      // High halves with even and odd last bits, both signs, and -0.0.
      const uint32_t high =
          i % 11 == 0 ? 0x8000u
                      : 0x3F80u + static_cast<uint32_t>(i % 7) + (i % 2 == 0 ? 0u : 0x8000u);
      const uint32_t bits = (high << 16) | (i % 11 == 0 ? 0u : kLow[i % 5]);
      std::memcpy(&a[i], &bits, sizeof(float));
    }
    std::vector<uint16_t> b(static_cast<size_t>(n) * k, 0);
    for (int j = 0; j < n; ++j) b[static_cast<size_t>(j) * k + j] = F32ToBf16(1.0f);
    for (CpuBf16GemmImpl path : Paths()) {
      const auto c = RunGemm(*Make(path), m, n, k, a, k, b, k, n);
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_EQ(c[i], Bf16ToF32(F32ToBf16(a[i])))
            << CpuBf16GemmName(path) << " m=" << m << " element " << i;
      }
    }
  }
}

// The threading contract (docs/kernels.md): a caller may split N across
// threads; every path gives the same bits whatever the split.
TEST(GemmBf16Test, EveryPathGivesTheSameBitsForEveryColumnSplit) {
  const int n = 100, k = 1031;
  for (const int m : {1, 2, 3, 4, 5, 8, 40, 150}) {
    const auto a = RandomVector(static_cast<size_t>(m) * k, 51 + m);
    const auto b = ToBf16(RandomVector(static_cast<size_t>(n) * k, 52));
    for (CpuBf16GemmImpl path : Paths()) {
      auto gemm = Make(path);
      const auto whole = RunGemm(*gemm, m, n, k, a, k, b, k, n);
      for (const std::vector<int>& cuts : testing::ColumnSplits(n)) {
        EXPECT_EQ(testing::RunGemmInColumnBlocks(*gemm, m, n, k, a, b, cuts), whole)
            << CpuBf16GemmName(path) << " m=" << m << " cuts " << cuts.size();
      }
    }
  }
}

TEST(GemmBf16Test, ZeroDepthWritesZerosUnlessAccumulating) {
  for (CpuBf16GemmImpl path : Paths()) {
    for (const bool accumulate : {false, true}) {
      std::vector<float> c(4 * 5, 3.0f);
      const float a = 0.0f;
      const uint16_t b = 0;
      Make(path)->GemmBf16({.m = 4,
                            .n = 5,
                            .k = 0,
                            .a = &a,
                            .lda = 1,
                            .b = &b,
                            .ldb = 1,
                            .c = c.data(),
                            .ldc = 5,
                            .accumulate = accumulate});
      for (float x : c) EXPECT_EQ(x, accumulate ? 3.0f : 0.0f) << CpuBf16GemmName(path);
    }
  }
}

TEST(GemmBf16Test, EveryCpuGemmKernelServesBf16) {
  const int m = 12, n = 9, k = 40;
  const auto a = RoundBf16(RandomVector(m * k, 31));
  const auto b = ToBf16(RandomVector(n * k, 32));
  const auto want = ReferenceGemm(m, n, k, a, k, b, k);
  std::vector<CpuGemmImpl> impls = {CpuGemmImpl::kBlocked, CpuGemmImpl::kAuto};
  if (CpuHasAvx512()) impls.push_back(CpuGemmImpl::kAvx512);
  if (CpuHasOpenBlas()) impls.push_back(CpuGemmImpl::kOpenBlas);
  for (CpuGemmImpl impl : impls) {
    auto gemm = CreateCpuGemm(impl).value();
    std::vector<float> c(m * n);
    gemm->GemmBf16({.m = m,
                    .n = n,
                    .k = k,
                    .a = a.data(),
                    .lda = k,
                    .b = b.data(),
                    .ldb = k,
                    .c = c.data(),
                    .ldc = n});
    EXPECT_LT(MaxRelError(c, want), 1e-5) << gemm->name();
  }
}

TEST(GemmBf16Test, ForcedPathTheCpuLacksIsUnavailable) {
  auto dp = CreateCpuGemm(CpuGemmImpl::kBlocked, CpuBf16GemmImpl::kAvx512Bf16);
  EXPECT_EQ(dp.ok(), CpuHasAvx512Bf16());
  if (!dp.ok()) {
    EXPECT_EQ(dp.status().code(), absl::StatusCode::kUnavailable);
  }
  auto widen = CreateCpuGemm(CpuGemmImpl::kBlocked, CpuBf16GemmImpl::kWidenAvx2);
  EXPECT_EQ(widen.ok(), CpuHasAvx2Fma());
}

}  // namespace
}  // namespace hc::kernels
