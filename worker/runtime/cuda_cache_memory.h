// CacheMemory in backend memory: rank r's tensors live on rank_backends[r]
// (its GPU for CUDA backends; fp32, layouts of cache_memory.h). It only uses
// the Backend interface, so it also runs (and is unit-tested) on the CPU
// backend. Copies and zeroing are enqueued on
// each rank's backend stream, so they are ordered before the next Forward on
// that rank; the returned status covers enqueueing (device faults surface at
// the next Synchronize of that backend).
//
// Thread-safety: not thread-safe; the engine thread owns it.
#ifndef HC_WORKER_RUNTIME_CUDA_CACHE_MEMORY_H_
#define HC_WORKER_RUNTIME_CUDA_CACHE_MEMORY_H_

#include <array>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/runtime/backend.h"
#include "worker/runtime/cache_memory.h"

namespace hc::runtime {

class CudaCacheMemory final : public CacheMemory {
 public:
  // Allocates zeroed fp32 tensors; rank r on rank_backends[r] (not owned; they
  // outlive this object). INVALID_ARGUMENT for a non-fp32 dtype, a bad layout
  // or no backends; RESOURCE_EXHAUSTED when device memory runs out.
  static absl::StatusOr<std::unique_ptr<CudaCacheMemory>> Create(
      const KvLayout& kv, const MambaLayout& mamba, std::vector<Backend*> rank_backends);

  const KvLayout& kv_layout() const override { return kv_layout_; }
  const MambaLayout& mamba_layout() const override { return mamba_layout_; }
  int num_ranks() const override { return static_cast<int>(backends_.size()); }

  absl::Status CopyKvBlock(BlockId src, BlockId dst, int num_tokens) override;
  absl::Status CopyMambaSlot(SlotId src, SlotId dst) override;
  absl::Status ZeroMambaSlot(SlotId slot) override;

  float* k(int rank, int layer) override { return kv_bufs_[rank][layer][0].as<float>(); }
  float* v(int rank, int layer) override { return kv_bufs_[rank][layer][1].as<float>(); }
  float* conv(int rank, int layer) override { return conv_bufs_[rank][layer].as<float>(); }
  float* ssm(int rank, int layer) override { return ssm_bufs_[rank][layer].as<float>(); }

  size_t TotalBytes() const;

 private:
  CudaCacheMemory(const KvLayout& kv, const MambaLayout& mamba, std::vector<Backend*> backends)
      : kv_layout_(kv), mamba_layout_(mamba), backends_(std::move(backends)) {}
  absl::Status Allocate();

  KvLayout kv_layout_;
  MambaLayout mamba_layout_;
  std::vector<Backend*> backends_;
  // [rank][layer][K|V], [rank][layer].
  std::vector<std::vector<std::array<DeviceBuffer, 2>>> kv_bufs_;
  std::vector<std::vector<DeviceBuffer>> conv_bufs_;
  std::vector<std::vector<DeviceBuffer>> ssm_bufs_;
};

}  // namespace hc::runtime

#endif  // HC_WORKER_RUNTIME_CUDA_CACHE_MEMORY_H_
