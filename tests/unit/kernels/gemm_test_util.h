// What the fp32 and bf16-weight GEMM tests share: the fp64 reference, bf16
// rounding of test data, and one call through either entry point with a
// padded output whose padding must stay untouched.
#ifndef HC_TESTS_UNIT_KERNELS_GEMM_TEST_UTIL_H_
#define HC_TESTS_UNIT_KERNELS_GEMM_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/gemm.h"
#include "kernels/half.h"

namespace hc::kernels::testing {

inline double WeightValue(float w) { return w; }
inline double WeightValue(uint16_t w) { return Bf16ToF32(w); }

// C[m, n] = sum_k A[m, k] B[n, k] in double; B fp32 or bf16 bit patterns.
template <typename W>
std::vector<float> ReferenceGemm(int m, int n, int k, const std::vector<float>& a, int lda,
                                 const std::vector<W>& b, int ldb) {
  std::vector<float> c(static_cast<size_t>(m) * n);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double s = 0.0;
      for (int p = 0; p < k; ++p)
        s += static_cast<double>(a[i * lda + p]) * WeightValue(b[j * ldb + p]);
      c[static_cast<size_t>(i) * n + j] = static_cast<float>(s);
    }
  }
  return c;
}

inline std::vector<uint16_t> ToBf16(const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = F32ToBf16(x[i]);
  return out;
}

// x rounded to bf16 and back: the values a bf16 path sees.
inline std::vector<float> RoundBf16(const std::vector<float>& x) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = Bf16ToF32(F32ToBf16(x[i]));
  return out;
}

// One product through Gemm (fp32 B) or GemmBf16 (bf16 B), columns [n0, n1)
// of C only (B rows n0..n1, as a caller splitting N across threads does),
// into a [m, ldc] buffer filled with kPad. Returns C[m, n] (the columns not
// computed stay kPad) and fails the test where a padding column changed.
constexpr float kPad = 7.0f;

template <typename W>
std::vector<float> RunGemm(const GemmKernel& gemm, int m, int n, int k, const std::vector<float>& a,
                           int lda, const std::vector<W>& b, int ldb, int ldc, int n0 = 0,
                           int n1 = -1) {
  if (n1 < 0) n1 = n;
  std::vector<float> c(static_cast<size_t>(m) * ldc, kPad);
  if constexpr (sizeof(W) == 2) {
    gemm.GemmBf16({.m = m,
                   .n = n1 - n0,
                   .k = k,
                   .a = a.data(),
                   .lda = lda,
                   .b = b.data() + n0 * ldb,
                   .ldb = ldb,
                   .c = c.data() + n0,
                   .ldc = ldc});
  } else {
    gemm.Gemm({.m = m,
               .n = n1 - n0,
               .k = k,
               .a = a.data(),
               .lda = lda,
               .b = b.data() + n0 * ldb,
               .ldb = ldb,
               .c = c.data() + n0,
               .ldc = ldc});
  }
  std::vector<float> got(static_cast<size_t>(m) * n);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) got[i * n + j] = c[i * ldc + j];
    for (int j = n; j < ldc; ++j) {
      if (c[i * ldc + j] != kPad) {
        ADD_FAILURE() << gemm.name() << " wrote past n in row " << i;
        break;
      }
    }
  }
  return got;
}

// The column splits the split tests use (boundaries, first 0, last n).
inline std::vector<std::vector<int>> ColumnSplits(int n) {
  return {{0, 7, 64, n}, {0, 1, 13, 50, n - 1, n}, {0, n / 3, 2 * n / 3, n}};
}

// C computed one column block [cuts[s], cuts[s + 1]) per call, assembled.
template <typename W>
std::vector<float> RunGemmInColumnBlocks(const GemmKernel& gemm, int m, int n, int k,
                                         const std::vector<float>& a, const std::vector<W>& b,
                                         const std::vector<int>& cuts) {
  std::vector<float> out(static_cast<size_t>(m) * n);
  for (size_t s = 0; s + 1 < cuts.size(); ++s) {
    const auto part = RunGemm(gemm, m, n, k, a, k, b, k, n, cuts[s], cuts[s + 1]);
    for (int i = 0; i < m; ++i) {
      for (int j = cuts[s]; j < cuts[s + 1]; ++j) out[i * n + j] = part[i * n + j];
    }
  }
  return out;
}

}  // namespace hc::kernels::testing

#endif  // HC_TESTS_UNIT_KERNELS_GEMM_TEST_UTIL_H_
