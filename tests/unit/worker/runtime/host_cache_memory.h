// Cache memory in host memory for tests and benchmarks that read and write the
// tensors directly (the cache library's, the engine's, the worker service's):
// BackendCacheMemory over one process-wide CPU backend. The backend is never
// destroyed, so memories built on it may be released in any order, at any
// time, from any test.
#ifndef HC_TESTS_UNIT_WORKER_RUNTIME_HOST_CACHE_MEMORY_H_
#define HC_TESTS_UNIT_WORKER_RUNTIME_HOST_CACHE_MEMORY_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/runtime/backend_cache_memory.h"
#include "worker/runtime/cpu_backend.h"

namespace hc::runtime::testing {

// The shared CPU backend (no allocation limit).
inline Backend* SharedCpuBackend() {
  static Backend* const backend = CreateCpuBackend().value().release();
  return backend;
}

// `num_ranks` shards of the layouts on SharedCpuBackend(); errors as
// BackendCacheMemory::Create.
inline absl::StatusOr<std::unique_ptr<BackendCacheMemory>> MakeHostCacheMemory(
    const KvLayout& kv, const MambaLayout& mamba, int num_ranks = 1) {
  return BackendCacheMemory::Create(
      kv, mamba, std::vector<Backend*>(num_ranks > 0 ? num_ranks : 0, SharedCpuBackend()));
}

}  // namespace hc::runtime::testing

#endif  // HC_TESTS_UNIT_WORKER_RUNTIME_HOST_CACHE_MEMORY_H_
