// The host backend: memory is ordinary (64-byte aligned) host memory and the
// kernels are kernels/cpu. Operations complete synchronously.
#ifndef HC_WORKER_RUNTIME_CPU_BACKEND_H_
#define HC_WORKER_RUNTIME_CPU_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/cpu/cpu_kernels.h"
#include "worker/runtime/backend.h"

namespace hc::runtime {

struct CpuBackendOptions {
  kernels::CpuKernelOptions kernels;
  // Allocation limit in bytes (0: unlimited); Allocate() beyond it fails with
  // RESOURCE_EXHAUSTED, so out-of-memory handling can be tested.
  size_t max_bytes = 0;
};

absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const CpuBackendOptions& options = {});

}  // namespace hc::runtime

#endif  // HC_WORKER_RUNTIME_CPU_BACKEND_H_
