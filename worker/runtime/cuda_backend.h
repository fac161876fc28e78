// The CUDA backend: memory is device memory of one GPU (cudaMalloc, tracked
// per allocation), every copy / memset / kernel goes to the backend's own
// non-blocking stream, and kernels() are kernels/cuda over that stream.
// One backend per GPU; tensor-parallel ranks each get their own.
//
// Ordering: work is asynchronous in stream order, except
// CopyDeviceToHost, which waits for the stream (the host data is valid when it
// returns), and CopyHostToDevice from pageable memory, whose source may be
// reused as soon as it returns (the CUDA runtime stages it). Synchronize()
// reports errors of earlier asynchronous work.
//
// Thread-safety: as Backend; every method makes the backend's device current
// on the calling thread first.
#ifndef HC_WORKER_RUNTIME_CUDA_BACKEND_H_
#define HC_WORKER_RUNTIME_CUDA_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_kernels.h"
#include "worker/runtime/backend.h"

namespace hc::runtime {

struct CudaBackendOptions {
  int device = 0;
  // Allocation limit in bytes (0: only the device's memory limits it).
  size_t max_bytes = 0;
};

class CudaBackend : public Backend {
 public:
  virtual int device() const = 0;
  virtual kernels::CudaStream stream() const = 0;
};

// UNAVAILABLE when there is no driver or no such device.
absl::StatusOr<std::unique_ptr<CudaBackend>> CreateCudaBackend(
    const CudaBackendOptions& options = {});

}  // namespace hc::runtime

#endif  // HC_WORKER_RUNTIME_CUDA_BACKEND_H_
