// The fp32 CPU GEMMs (GemmKernel::Gemm), every implementation this CPU runs,
// against an fp64 reference.
#include <algorithm>
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
using testing::RunGemm;

std::vector<CpuGemmImpl> Impls() {
  std::vector<CpuGemmImpl> impls = {CpuGemmImpl::kBlocked, CpuGemmImpl::kAuto};
  if (CpuHasAvx512()) impls.push_back(CpuGemmImpl::kAvx512);
  if (CpuHasOpenBlas()) impls.push_back(CpuGemmImpl::kOpenBlas);
  return impls;
}

class GemmShapeTest : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(GemmShapeTest, EveryImplementationMatchesReferenceWithPaddedLeadingDims) {
  const auto [m, n, k] = GetParam();
  const int lda = k + 3, ldb = k + 5, ldc = n + 2;
  const auto a = RandomVector(static_cast<size_t>(m) * lda, 1 + m);
  const auto b = RandomVector(static_cast<size_t>(n) * ldb, 2 + n);
  const auto want = ReferenceGemm(m, n, k, a, lda, b, ldb);
  for (CpuGemmImpl impl : Impls()) {
    auto gemm = CreateCpuGemm(impl).value();
    const auto got = RunGemm(*gemm, m, n, k, a, lda, b, ldb, ldc);
    EXPECT_LT(MaxRelError(got, want), 1e-5)
        << gemm->name() << " m=" << m << " n=" << n << " k=" << k;
  }
}

// Beyond the small shapes: the AVX-512 kernel's tails (m not a multiple of
// its 16-row panels or 32-row tiles, n not a multiple of its 12 weight rows,
// k across its 512-deep blocks with an odd remainder, m across its 128-row
// blocks).
INSTANTIATE_TEST_SUITE_P(
    Shapes, GemmShapeTest,
    ::testing::Values(
        std::make_tuple(1, 1, 1), std::make_tuple(1, 37, 64), std::make_tuple(2, 17, 33),
        std::make_tuple(3, 64, 100), std::make_tuple(4, 16, 8), std::make_tuple(6, 16, 256),
        std::make_tuple(7, 31, 257), std::make_tuple(13, 50, 300), std::make_tuple(97, 33, 129),
        std::make_tuple(100, 2100, 20), std::make_tuple(64, 96, 600), std::make_tuple(9, 1, 1),
        std::make_tuple(17, 13, 1), std::make_tuple(33, 25, 1031), std::make_tuple(131, 23, 515)));

TEST(GemmTest, AccumulateAddsToExistingOutput) {
  for (const int m : {1, 3, 8, 9, 45}) {
    const int n = 21, k = 700;
    const auto a = RandomVector(m * k, 3), b = RandomVector(n * k, 4);
    const auto c0 = RandomVector(m * n, 5);
    auto want = ReferenceGemm(m, n, k, a, k, b, k);
    for (size_t i = 0; i < want.size(); ++i) want[i] += c0[i];
    for (CpuGemmImpl impl : Impls()) {
      auto gemm = CreateCpuGemm(impl).value();
      auto c = c0;
      gemm->Gemm({.m = m,
                  .n = n,
                  .k = k,
                  .a = a.data(),
                  .lda = k,
                  .b = b.data(),
                  .ldb = k,
                  .c = c.data(),
                  .ldc = n,
                  .accumulate = true});
      EXPECT_LT(MaxRelError(c, want), 1e-5) << gemm->name() << " m=" << m;
    }
  }
}

// The threading contract (docs/kernels.md): a caller may split N across
// threads, calling the kernel on column blocks; every own kernel gives the
// same bits whatever the split.
TEST(GemmTest, OwnKernelsGiveTheSameBitsForEveryColumnSplit) {
  std::vector<CpuGemmImpl> own = {CpuGemmImpl::kBlocked};
  if (CpuHasAvx512()) own.push_back(CpuGemmImpl::kAvx512);
  const int n = 100, k = 1030;
  for (const int m : {1, 5, 8, 40, 150}) {
    const auto a = RandomVector(static_cast<size_t>(m) * k, 41 + m);
    const auto b = RandomVector(static_cast<size_t>(n) * k, 42);
    for (CpuGemmImpl impl : own) {
      auto gemm = CreateCpuGemm(impl).value();
      const auto whole = RunGemm(*gemm, m, n, k, a, k, b, k, n);
      for (const std::vector<int>& cuts : testing::ColumnSplits(n)) {
        EXPECT_EQ(testing::RunGemmInColumnBlocks(*gemm, m, n, k, a, b, cuts), whole)
            << gemm->name() << " m=" << m << " cuts " << cuts.size();
      }
    }
  }
}

// Decode batches (m <= 8) run every row through one pass over the weight; a
// row's bits must not depend on how many other rows share the call, so a
// sequence decodes the same alone as in a batch of 8. n = 100 covers the
// weight-row tiles with and without prefetching and their column tails, k
// the 16-wide masked tail.
TEST(GemmTest, SmallMRowsGiveTheSameBitsForEveryBatchSize) {
  std::vector<CpuGemmImpl> own = {CpuGemmImpl::kBlocked};
  if (CpuHasAvx512()) own.push_back(CpuGemmImpl::kAvx512);
  const int n = 100, k = 1030;
  const auto a = RandomVector(static_cast<size_t>(8) * k, 61);
  const auto b = RandomVector(static_cast<size_t>(n) * k, 62);
  for (CpuGemmImpl impl : own) {
    auto gemm = CreateCpuGemm(impl).value();
    std::vector<float> alone;  // every row computed on its own (m = 1)
    for (int r = 0; r < 8; ++r) {
      const std::vector<float> row(a.begin() + r * k, a.begin() + (r + 1) * k);
      const auto c = RunGemm(*gemm, 1, n, k, row, k, b, k, n);
      alone.insert(alone.end(), c.begin(), c.end());
    }
    for (int m = 2; m <= 8; ++m) {
      const auto c = RunGemm(*gemm, m, n, k, a, k, b, k, n);
      EXPECT_TRUE(std::equal(c.begin(), c.end(), alone.begin())) << gemm->name() << " m=" << m;
    }
  }
}

TEST(GemmTest, ZeroDepthWritesZerosUnlessAccumulating) {
  for (CpuGemmImpl impl : Impls()) {
    auto gemm = CreateCpuGemm(impl).value();
    std::vector<float> c(4 * 5, 3.0f);
    float dummy = 0.0f;
    gemm->Gemm({.m = 4,
                .n = 5,
                .k = 0,
                .a = &dummy,
                .lda = 1,
                .b = &dummy,
                .ldb = 1,
                .c = c.data(),
                .ldc = 5});
    for (float x : c) EXPECT_EQ(x, 0.0f) << gemm->name();
  }
}

TEST(GemmTest, ForcedImplementationTheBuildOrCpuLacksIsUnavailable) {
  auto blas = CreateCpuGemm(CpuGemmImpl::kOpenBlas);
  EXPECT_EQ(blas.ok(), CpuHasOpenBlas());
  if (!blas.ok()) {
    EXPECT_EQ(blas.status().code(), absl::StatusCode::kUnavailable);
  }
  auto avx512 = CreateCpuGemm(CpuGemmImpl::kAvx512);
  EXPECT_EQ(avx512.ok(), CpuHasAvx512());
  if (!avx512.ok()) {
    EXPECT_EQ(avx512.status().code(), absl::StatusCode::kUnavailable);
  }
}

}  // namespace
}  // namespace hc::kernels
