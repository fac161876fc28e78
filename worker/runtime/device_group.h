// The devices of one tensor-parallel model, chosen at run time (what
// `hc-worker --device cpu|cuda --tp N` needs): one backend per rank (CPU: one
// shared host backend; CUDA: one backend per GPU 0..tp-1), the communicators
// between the ranks (thread communicators on CPU, NCCL on CUDA) and the cache
// memory over the rank backends (BackendCacheMemory).
//
// Typical use:
//   HC_ASSIGN_OR_RETURN(auto group, CreateDeviceGroup({.kind = kind, .tp = tp}));
//   TensorParallelModel::Create({.tp_size = tp, .rank_backends = group->rank_backends(),
//                                .make_communicators = group->communicator_factory()}, ...);
//   HC_ASSIGN_OR_RETURN(auto cache, group->CreateCacheMemory(kv_layout, mamba_layout));
//
// Thread-safety: immutable after creation; the backends are thread-safe.
#ifndef HC_WORKER_RUNTIME_DEVICE_GROUP_H_
#define HC_WORKER_RUNTIME_DEVICE_GROUP_H_

#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/runtime/backend.h"
#include "worker/runtime/cache_memory.h"
#include "worker/runtime/communicator.h"

namespace hc::runtime {

// "cpu" or "cuda"; INVALID_ARGUMENT otherwise.
absl::StatusOr<BackendKind> ParseBackendKind(std::string_view name);

// True when this build has the CUDA backend (and NCCL for tp > 1 on CUDA).
bool BuiltWithCuda();
bool BuiltWithNccl();
// Usable CUDA devices (0 in a build without CUDA or on a machine without one).
int CudaDevicesAvailable();

struct DeviceGroupOptions {
  BackendKind kind = BackendKind::kCpu;
  int tp = 1;
  // Per-backend allocation limit in bytes (0: unlimited).
  size_t max_bytes_per_backend = 0;
};

class DeviceGroup {
 public:
  virtual ~DeviceGroup() = default;
  virtual BackendKind kind() const = 0;
  virtual int tp() const = 0;
  // Element r is rank r's backend; owned by the group.
  virtual std::vector<Backend*> rank_backends() const = 0;
  // Creates the group's communicators (element r is rank r). Valid while the
  // group lives; the communicators must be destroyed before the group.
  virtual std::function<absl::StatusOr<std::vector<std::unique_ptr<Communicator>>>(int)>
  communicator_factory() const = 0;
  // Zeroed cache memory with `tp` ranks on the rank backends (the same
  // BackendCacheMemory for every kind); errors as BackendCacheMemory::Create.
  absl::StatusOr<std::unique_ptr<CacheMemory>> CreateCacheMemory(const KvLayout& kv,
                                                                 const MambaLayout& mamba) const;
};

// INVALID_ARGUMENT for tp < 1; UNIMPLEMENTED for CUDA in a build without it
// (or tp > 1 without NCCL); UNAVAILABLE when fewer than tp GPUs are usable.
absl::StatusOr<std::unique_ptr<DeviceGroup>> CreateDeviceGroup(const DeviceGroupOptions& options);

}  // namespace hc::runtime

#endif  // HC_WORKER_RUNTIME_DEVICE_GROUP_H_
