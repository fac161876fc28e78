// Helpers of the GPU tests: skipping without a device, device copies of host
// vectors (owned by a DeviceArena on a CUDA backend), seeded random data and
// the relative error used by the kernel tests.
#ifndef HC_TESTS_GPU_GPU_TEST_UTIL_H_
#define HC_TESTS_GPU_GPU_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_kernels.h"
#include "worker/runtime/backend.h"

// Skips the current test when no CUDA device can be used (this is the only
// reason a GPU test skips).
#define HC_SKIP_WITHOUT_CUDA_DEVICE(min_devices)                                                  \
  do {                                                                                            \
    std::string hc_why;                                                                           \
    const int hc_count = ::hc::kernels::CudaDeviceCount(&hc_why);                                 \
    if (hc_count < (min_devices)) {                                                               \
      GTEST_SKIP() << "no CUDA device: " << hc_count << " usable, " << (min_devices) << " needed" \
                   << (hc_why.empty() ? "" : " (") << hc_why << (hc_why.empty() ? "" : ")");      \
    }                                                                                             \
  } while (0)

namespace hc::gpu_testing {

inline std::vector<float> Random(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// max_i |a_i - b_i| / max_i |b_i| (relative to the reference's scale).
inline double MaxRelError(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || b.empty()) return INFINITY;
  double diff = 0.0, ref = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    ref = std::max(ref, std::abs(static_cast<double>(b[i])));
  }
  return diff / ref;
}

// Device buffers of one backend, freed with the arena.
class DeviceArena {
 public:
  explicit DeviceArena(runtime::Backend* backend) : backend_(backend) {}

  template <typename T>
  T* Upload(const std::vector<T>& host) {
    runtime::DeviceBuffer buf =
        runtime::DeviceBuffer::Create(backend_, std::max<size_t>(host.size(), 1) * sizeof(T))
            .value();
    if (!host.empty()) {
      EXPECT_TRUE(
          backend_->CopyHostToDevice(buf.data(), host.data(), host.size() * sizeof(T)).ok());
    }
    T* ptr = buf.as<T>();
    bufs_.push_back(std::move(buf));
    return ptr;
  }

  template <typename T>
  T* Zeros(size_t n) {
    return Upload(std::vector<T>(n, T{}));
  }

  template <typename T>
  std::vector<T> Download(const T* ptr, size_t n) {
    std::vector<T> host(n);
    EXPECT_TRUE(backend_->Synchronize().ok());
    if (n > 0) {
      EXPECT_TRUE(backend_->CopyDeviceToHost(host.data(), ptr, n * sizeof(T)).ok());
    }
    return host;
  }

 private:
  runtime::Backend* backend_;
  std::vector<runtime::DeviceBuffer> bufs_;
};

}  // namespace hc::gpu_testing

#endif  // HC_TESTS_GPU_GPU_TEST_UTIL_H_
