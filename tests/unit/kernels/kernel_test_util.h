// Helpers shared by the kernel tests: seeded random tensors and error norms.
#ifndef HC_TESTS_UNIT_KERNELS_KERNEL_TEST_UTIL_H_
#define HC_TESTS_UNIT_KERNELS_KERNEL_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace hc::kernels::testing {

inline std::vector<float> RandomVector(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// max_i |a_i - b_i| / max(max_i |b_i|, tiny): relative to the reference's scale.
inline double MaxRelError(const std::vector<float>& a, const std::vector<float>& b) {
  double max_diff = 0.0, max_ref = 1e-30;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(static_cast<double>(a[i]) - b[i]));
    max_ref = std::max(max_ref, std::abs(static_cast<double>(b[i])));
  }
  return a.size() == b.size() ? max_diff / max_ref : INFINITY;
}

}  // namespace hc::kernels::testing

#endif  // HC_TESTS_UNIT_KERNELS_KERNEL_TEST_UTIL_H_
