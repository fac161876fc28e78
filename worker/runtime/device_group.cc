#include "worker/runtime/device_group.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/runtime/backend_cache_memory.h"
#include "worker/runtime/cpu_backend.h"
#if defined(HC_HAVE_CUDA)
#include "kernels/cuda/cuda_kernels.h"
#include "worker/runtime/cuda_backend.h"
#endif
#if defined(HC_HAVE_NCCL)
#include "worker/runtime/nccl_communicator.h"
#endif

namespace hc::runtime {
namespace {

using Factory = std::function<absl::StatusOr<std::vector<std::unique_ptr<Communicator>>>(int)>;

class CpuGroup final : public DeviceGroup {
 public:
  CpuGroup(std::unique_ptr<Backend> backend, int tp) : backend_(std::move(backend)), tp_(tp) {}
  BackendKind kind() const override { return BackendKind::kCpu; }
  int tp() const override { return tp_; }
  std::vector<Backend*> rank_backends() const override {
    return std::vector<Backend*>(tp_, backend_.get());
  }
  Factory communicator_factory() const override {
    return [](int n) -> absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> {
      return CreateThreadCommunicators(n);
    };
  }

 private:
  const std::unique_ptr<Backend> backend_;
  const int tp_;
};

#if defined(HC_HAVE_CUDA)
class CudaGroup final : public DeviceGroup {
 public:
  explicit CudaGroup(std::vector<std::unique_ptr<CudaBackend>> backends)
      : backends_(std::move(backends)) {}
  BackendKind kind() const override { return BackendKind::kCuda; }
  int tp() const override { return static_cast<int>(backends_.size()); }
  std::vector<Backend*> rank_backends() const override {
    std::vector<Backend*> out;
    for (const auto& b : backends_) out.push_back(b.get());
    return out;
  }
  Factory communicator_factory() const override {
    return [this](int n) -> absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> {
      if (n != tp()) return absl::InvalidArgumentError("communicator group size != tp");
      if (n == 1) return CreateThreadCommunicators(1);  // never used for data at tp = 1
#if defined(HC_HAVE_NCCL)
      std::vector<CudaBackend*> raw;
      for (const auto& b : backends_) raw.push_back(b.get());
      return CreateNcclCommunicators(raw);
#else
      return absl::UnimplementedError("tensor parallel on CUDA needs a build with NCCL");
#endif
    };
  }

 private:
  const std::vector<std::unique_ptr<CudaBackend>> backends_;
};
#endif

}  // namespace

absl::StatusOr<std::unique_ptr<CacheMemory>> DeviceGroup::CreateCacheMemory(
    const KvLayout& kv, const MambaLayout& mamba) const {
  HC_ASSIGN_OR_RETURN(auto mem, BackendCacheMemory::Create(kv, mamba, rank_backends()));
  return std::unique_ptr<CacheMemory>(std::move(mem));
}

absl::StatusOr<BackendKind> ParseBackendKind(std::string_view name) {
  if (name == "cpu") return BackendKind::kCpu;
  if (name == "cuda") return BackendKind::kCuda;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown device \"", std::string(name), "\" (cpu or cuda)"));
}

bool BuiltWithCuda() {
#if defined(HC_HAVE_CUDA)
  return true;
#else
  return false;
#endif
}

int CudaDevicesAvailable() {
#if defined(HC_HAVE_CUDA)
  return kernels::CudaDeviceCount();
#else
  return 0;
#endif
}

bool BuiltWithNccl() {
#if defined(HC_HAVE_NCCL)
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<DeviceGroup>> CreateDeviceGroup(const DeviceGroupOptions& options) {
  if (options.tp < 1) return absl::InvalidArgumentError("tp must be positive");
  if (options.kind == BackendKind::kCpu) {
    HC_ASSIGN_OR_RETURN(
        auto backend,
        CreateCpuBackend({.kernels = {}, .max_bytes = options.max_bytes_per_backend}));
    return std::unique_ptr<DeviceGroup>(new CpuGroup(std::move(backend), options.tp));
  }
#if defined(HC_HAVE_CUDA)
  if (options.tp > 1 && !BuiltWithNccl()) {
    return absl::UnimplementedError("tensor parallel on CUDA needs a build with NCCL");
  }
  std::string why;
  const int count = kernels::CudaDeviceCount(&why);
  if (count < options.tp) {
    return absl::UnavailableError(
        absl::StrCat("--tp ", options.tp, " needs ", options.tp, " CUDA devices, ", count,
                     " usable", why.empty() ? "" : " (", why, why.empty() ? "" : ")"));
  }
  std::vector<std::unique_ptr<CudaBackend>> backends;
  for (int r = 0; r < options.tp; ++r) {
    HC_ASSIGN_OR_RETURN(
        auto b, CreateCudaBackend({.device = r, .max_bytes = options.max_bytes_per_backend}));
    backends.push_back(std::move(b));
  }
  return std::unique_ptr<DeviceGroup>(new CudaGroup(std::move(backends)));
#else
  return absl::UnimplementedError("this build has no CUDA backend (configure with nvcc available)");
#endif
}

}  // namespace hc::runtime
