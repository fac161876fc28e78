#include "worker/runtime/cpu_backend.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "kernels/profiled_kernels.h"

namespace hc::runtime {

namespace {

constexpr size_t kAlignment = 64;
constexpr size_t kHugePage = size_t{2} << 20;

// Host memory for a weight, the KV cache or the Mamba state slots. Buffers of
// a huge page or more start on a 2 MiB boundary and ask for transparent huge
// pages (the kernel's default policy here is `madvise`: none unless asked).
// Decode streams every weight once per step and walks the KV cache and the
// state slots: on 4 KiB pages each page is a TLB miss and a point where the
// hardware prefetcher stops (model_bench decode, docs/kernels.md).
void* AllocateHost(size_t bytes) {
  if (bytes < kHugePage) {
    return std::aligned_alloc(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
  }
  void* ptr = nullptr;
  if (posix_memalign(&ptr, kHugePage, bytes) != 0) return nullptr;
#if defined(MADV_HUGEPAGE)
  // Advice only: without THP (or with it off) the buffer works as well.
  (void)madvise(ptr, bytes, MADV_HUGEPAGE);
#endif
  return ptr;
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(kernels::KernelSet kernels, size_t max_bytes, bool profiled)
      : kernels_(std::move(kernels)), max_bytes_(max_bytes), profiled_(profiled) {}

  ~CpuBackend() override {
    if (profiled_) {
      HC_LOG(INFO) << "kernel time by family since start ($HC_KERNEL_PROFILE):\n"
                   << kernels::KernelProfile::Format(kernels::ProcessKernelProfile().Snapshot(), 0);
    }
    absl::MutexLock lock(&mu_);
    for (auto& [ptr, bytes] : live_) std::free(ptr);
  }

  BackendKind kind() const override { return BackendKind::kCpu; }

  absl::StatusOr<void*> Allocate(size_t bytes) override {
    if (bytes == 0) return absl::InvalidArgumentError("Allocate of 0 bytes");
    absl::MutexLock lock(&mu_);
    if (max_bytes_ != 0 && allocated_ + bytes > max_bytes_) {
      return absl::ResourceExhaustedError(absl::StrCat("CPU backend limit: ", allocated_, " + ",
                                                       bytes, " > ", max_bytes_, " bytes"));
    }
    void* ptr = AllocateHost(bytes);
    if (ptr == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat("host allocation of ", bytes, " failed"));
    }
    live_[ptr] = bytes;
    allocated_ += bytes;
    return ptr;
  }

  void Free(void* ptr) override {
    if (ptr == nullptr) return;
    absl::MutexLock lock(&mu_);
    auto it = live_.find(ptr);
    HC_CHECK(it != live_.end()) << "Free of a pointer this backend did not allocate";
    allocated_ -= it->second;
    live_.erase(it);
    std::free(ptr);
  }

  absl::Status CopyHostToDevice(void* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status CopyDeviceToHost(void* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status CopyDeviceToDevice(void* dst, const void* src, size_t bytes) override {
    std::memmove(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status Memset(void* dst, int value, size_t bytes) override {
    std::memset(dst, value, bytes);
    return absl::OkStatus();
  }
  absl::Status Synchronize() override { return absl::OkStatus(); }

  size_t allocated_bytes() const override {
    absl::MutexLock lock(&mu_);
    return allocated_;
  }

  const kernels::KernelSet& kernels() const override { return kernels_; }

 private:
  const kernels::KernelSet kernels_;
  const size_t max_bytes_;
  const bool profiled_;  // kernels_ time into ProcessKernelProfile()
  mutable absl::Mutex mu_;
  absl::flat_hash_map<void*, size_t> live_ ABSL_GUARDED_BY(mu_);
  size_t allocated_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const CpuBackendOptions& options) {
  HC_ASSIGN_OR_RETURN(kernels::KernelSet set, kernels::CreateCpuKernels(options.kernels));
  // Opt-in per-family timing (kernels/profiled_kernels.h); unset: no wrapper,
  // no cost.
  const char* profile = std::getenv("HC_KERNEL_PROFILE");
  const bool profiled = profile != nullptr && *profile != '\0' && std::string(profile) != "0";
  if (profiled) set = kernels::ProfileKernels(std::move(set), &kernels::ProcessKernelProfile());
  return std::make_unique<CpuBackend>(std::move(set), options.max_bytes, profiled);
}

}  // namespace hc::runtime
