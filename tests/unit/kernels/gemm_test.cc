#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace hc::kernels {
namespace {

using testing::MaxRelError;
using testing::RandomVector;

// C[m, n] = sum_k A[m, k] B[n, k], in double.
std::vector<float> ReferenceGemm(int m, int n, int k, const std::vector<float>& a, int lda,
                                 const std::vector<float>& b, int ldb) {
  std::vector<float> c(static_cast<size_t>(m) * n);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double s = 0.0;
      for (int p = 0; p < k; ++p) s += static_cast<double>(a[i * lda + p]) * b[j * ldb + p];
      c[static_cast<size_t>(i) * n + j] = static_cast<float>(s);
    }
  }
  return c;
}

std::vector<CpuGemmImpl> Impls() {
  std::vector<CpuGemmImpl> impls = {CpuGemmImpl::kBlocked, CpuGemmImpl::kAuto};
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
    std::vector<float> c(static_cast<size_t>(m) * ldc, 7.0f);
    gemm->Gemm({.m = m,
                .n = n,
                .k = k,
                .a = a.data(),
                .lda = lda,
                .b = b.data(),
                .ldb = ldb,
                .c = c.data(),
                .ldc = ldc});
    std::vector<float> got(static_cast<size_t>(m) * n);
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < n; ++j) got[i * n + j] = c[i * ldc + j];
      for (int j = n; j < ldc; ++j) {
        ASSERT_EQ(c[i * ldc + j], 7.0f) << gemm->name() << " wrote past n in row " << i;
      }
    }
    EXPECT_LT(MaxRelError(got, want), 1e-5)
        << gemm->name() << " m=" << m << " n=" << n << " k=" << k;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GemmShapeTest,
                         ::testing::Values(std::make_tuple(1, 1, 1), std::make_tuple(1, 37, 64),
                                           std::make_tuple(2, 17, 33), std::make_tuple(3, 64, 100),
                                           std::make_tuple(4, 16, 8), std::make_tuple(6, 16, 256),
                                           std::make_tuple(7, 31, 257),
                                           std::make_tuple(13, 50, 300),
                                           std::make_tuple(97, 33, 129),
                                           std::make_tuple(100, 2100, 20),
                                           std::make_tuple(64, 96, 600)));

TEST(GemmTest, AccumulateAddsToExistingOutput) {
  const int m = 9, n = 21, k = 270;
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
    EXPECT_LT(MaxRelError(c, want), 1e-5) << gemm->name();
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

TEST(GemmTest, OpenBlasRequestFailsCleanlyWithoutOpenBlas) {
  auto gemm = CreateCpuGemm(CpuGemmImpl::kOpenBlas);
  EXPECT_EQ(gemm.ok(), CpuHasOpenBlas());
  if (!gemm.ok()) {
    EXPECT_EQ(gemm.status().code(), absl::StatusCode::kUnavailable);
  }
}

}  // namespace
}  // namespace hc::kernels
