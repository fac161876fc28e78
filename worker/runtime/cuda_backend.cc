#include "worker/runtime/cuda_backend.h"

#include <cuda_runtime.h>

#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace hc::runtime {
namespace {

absl::Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  cudaGetLastError();  // clear non-sticky errors so later calls are not blamed
  const std::string msg = absl::StrCat(what, ": ", cudaGetErrorString(err));
  return err == cudaErrorMemoryAllocation ? absl::ResourceExhaustedError(msg)
                                          : absl::InternalError(msg);
}

class CudaBackendImpl final : public CudaBackend {
 public:
  CudaBackendImpl(int device, cudaStream_t stream, kernels::KernelSet kernels, size_t max_bytes)
      : device_(device), stream_(stream), kernels_(std::move(kernels)), max_bytes_(max_bytes) {}

  ~CudaBackendImpl() override {
    UseDevice();
    cudaStreamSynchronize(stream_);
    absl::MutexLock lock(&mu_);
    for (auto& [ptr, bytes] : live_) cudaFree(ptr);
    live_.clear();
    // The kernels (cuBLAS handle) go before the stream they are bound to.
    kernels_ = kernels::KernelSet();
    cudaStreamDestroy(stream_);
  }

  BackendKind kind() const override { return BackendKind::kCuda; }
  int device() const override { return device_; }
  kernels::CudaStream stream() const override { return stream_; }

  absl::StatusOr<void*> Allocate(size_t bytes) override {
    if (bytes == 0) return absl::InvalidArgumentError("Allocate of 0 bytes");
    UseDevice();
    absl::MutexLock lock(&mu_);
    if (max_bytes_ != 0 && allocated_ + bytes > max_bytes_) {
      return absl::ResourceExhaustedError(absl::StrCat("CUDA backend limit: ", allocated_, " + ",
                                                       bytes, " > ", max_bytes_, " bytes"));
    }
    void* ptr = nullptr;
    HC_RETURN_IF_ERROR(
        CudaStatus(cudaMalloc(&ptr, bytes), absl::StrCat("cudaMalloc(", bytes, ")").c_str()));
    live_[ptr] = bytes;
    allocated_ += bytes;
    return ptr;
  }

  void Free(void* ptr) override {
    if (ptr == nullptr) return;
    UseDevice();
    absl::MutexLock lock(&mu_);
    auto it = live_.find(ptr);
    HC_CHECK(it != live_.end()) << "Free of a pointer this backend did not allocate";
    allocated_ -= it->second;
    live_.erase(it);
    // cudaFree waits for the device, so no queued kernel still uses `ptr`.
    const cudaError_t err = cudaFree(ptr);
    if (err != cudaSuccess) {
      HC_LOG(ERROR) << "cudaFree: " << cudaGetErrorString(err);
      cudaGetLastError();
    }
  }

  absl::Status CopyHostToDevice(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    UseDevice();
    return CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_),
                      "cudaMemcpyAsync H2D");
  }
  absl::Status CopyDeviceToHost(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    UseDevice();
    HC_RETURN_IF_ERROR(CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_),
                                  "cudaMemcpyAsync D2H"));
    return CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize after D2H");
  }
  absl::Status CopyDeviceToDevice(void* dst, const void* src, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    UseDevice();
    return CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_),
                      "cudaMemcpyAsync D2D");
  }
  absl::Status Memset(void* dst, int value, size_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    UseDevice();
    return CudaStatus(cudaMemsetAsync(dst, value, bytes, stream_), "cudaMemsetAsync");
  }
  absl::Status Synchronize() override {
    UseDevice();
    return CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

  size_t allocated_bytes() const override {
    absl::MutexLock lock(&mu_);
    return allocated_;
  }

  const kernels::KernelSet& kernels() const override { return kernels_; }

 private:
  void UseDevice() const {
    int current = -1;
    if (cudaGetDevice(&current) != cudaSuccess || current != device_) {
      const cudaError_t err = cudaSetDevice(device_);
      HC_CHECK(err == cudaSuccess)
          << "cudaSetDevice(" << device_ << "): " << cudaGetErrorString(err);
    }
  }

  const int device_;
  const cudaStream_t stream_;
  kernels::KernelSet kernels_;  // reset only in the destructor
  const size_t max_bytes_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<void*, size_t> live_ ABSL_GUARDED_BY(mu_);
  size_t allocated_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CudaBackend>> CreateCudaBackend(const CudaBackendOptions& options) {
  std::string why;
  const int count = kernels::CudaDeviceCount(&why);
  if (options.device < 0 || options.device >= count) {
    return absl::UnavailableError(
        absl::StrCat("CUDA device ", options.device, " not available: ", count, " devices",
                     why.empty() ? "" : " (", why, why.empty() ? "" : ")"));
  }
  HC_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(options.device), "cudaSetDevice"));
  cudaStream_t stream = nullptr;
  HC_RETURN_IF_ERROR(
      CudaStatus(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate"));
  auto set = kernels::CreateCudaKernels({.device = options.device, .stream = stream});
  if (!set.ok()) {
    cudaStreamDestroy(stream);
    return set.status();
  }
  return std::unique_ptr<CudaBackend>(
      new CudaBackendImpl(options.device, stream, std::move(set).value(), options.max_bytes));
}

}  // namespace hc::runtime
