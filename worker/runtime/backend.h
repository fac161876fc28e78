// Device memory and execution of one backend: CpuBackend (cpu_backend.h) or
// CudaBackend (cuda_backend.h, one per GPU; built with CUDA).
//
// A Backend owns nothing the caller allocated elsewhere; memory returned by
// Allocate() is released with Free() on the same backend. All copies and
// memsets are issued on the backend's stream (in order); Synchronize() waits
// until everything issued so far has finished. On the CPU backend every
// operation completes before it returns.
//
// Thread-safety: all methods are thread-safe (tensor-parallel ranks on
// separate threads share a host backend); work issued from different threads
// is not ordered relative to each other.
#ifndef HC_WORKER_RUNTIME_BACKEND_H_
#define HC_WORKER_RUNTIME_BACKEND_H_

#include <cstddef>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/kernels.h"

namespace hc::runtime {

enum class BackendKind { kCpu, kCuda };

class Backend {
 public:
  virtual ~Backend() = default;

  virtual BackendKind kind() const = 0;

  // Uninitialised device memory of `bytes` bytes, aligned to at least 64
  // bytes. RESOURCE_EXHAUSTED when it cannot be provided; INVALID_ARGUMENT
  // for 0 bytes.
  virtual absl::StatusOr<void*> Allocate(size_t bytes) = 0;
  // REQUIRES: `ptr` came from Allocate() on this backend and is not yet freed
  // (nullptr is a no-op).
  virtual void Free(void* ptr) = 0;

  virtual absl::Status CopyHostToDevice(void* dst, const void* src, size_t bytes) = 0;
  virtual absl::Status CopyDeviceToHost(void* dst, const void* src, size_t bytes) = 0;
  virtual absl::Status CopyDeviceToDevice(void* dst, const void* src, size_t bytes) = 0;
  virtual absl::Status Memset(void* dst, int value, size_t bytes) = 0;
  virtual absl::Status Synchronize() = 0;

  // Bytes currently allocated through this backend.
  virtual size_t allocated_bytes() const = 0;

  // The kernels operating on this backend's memory. Valid for the backend's
  // lifetime.
  virtual const kernels::KernelSet& kernels() const = 0;
};

// RAII owner of one allocation. Move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static absl::StatusOr<DeviceBuffer> Create(Backend* backend, size_t bytes);
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { Reset(); }

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t size() const { return bytes_; }
  void Reset();

 private:
  Backend* backend_ = nullptr;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace hc::runtime

#endif  // HC_WORKER_RUNTIME_BACKEND_H_
