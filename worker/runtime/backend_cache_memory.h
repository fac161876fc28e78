// The one CacheMemory implementation: rank r's tensors (fp32, layouts of
// cache_memory.h) live in memory allocated through rank_backends[r], so the
// same code serves the CPU backend (host memory; tensor-parallel ranks may
// share one backend) and CUDA backends (one GPU per rank), and every byte
// shows in that backend's allocated_bytes() and counts against its limit.
//
// Copies and zeroing are enqueued on each rank's backend stream, so they are
// ordered before the next Forward on that rank; the returned status covers
// enqueueing (device faults surface at the next Synchronize of that backend).
// On the CPU backend they complete before returning, so k/v/conv/ssm may be
// read and written directly as host memory.
//
// Thread-safety: not thread-safe; the engine thread owns it.
#ifndef HC_WORKER_RUNTIME_BACKEND_CACHE_MEMORY_H_
#define HC_WORKER_RUNTIME_BACKEND_CACHE_MEMORY_H_

#include <array>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/runtime/backend.h"
#include "worker/runtime/cache_memory.h"

namespace hc::runtime {

class BackendCacheMemory final : public CacheMemory {
 public:
  // Allocates zeroed fp32 tensors; rank r on rank_backends[r] (not owned; they
  // outlive this object; the same backend may serve several ranks).
  // INVALID_ARGUMENT, allocating nothing, for no or a null backend, a
  // non-fp32 dtype, no KV blocks or Mamba slots, or another bad layout size;
  // RESOURCE_EXHAUSTED (everything allocated so far released) when a backend
  // runs out of memory.
  static absl::StatusOr<std::unique_ptr<BackendCacheMemory>> Create(
      const KvLayout& kv, const MambaLayout& mamba, std::vector<Backend*> rank_backends);

  const KvLayout& kv_layout() const override { return kv_layout_; }
  const MambaLayout& mamba_layout() const override { return mamba_layout_; }
  int num_ranks() const override { return static_cast<int>(backends_.size()); }

  absl::Status CopyKvBlock(BlockId src, BlockId dst, int num_tokens) override;
  absl::Status CopyMambaSlot(SlotId src, SlotId dst) override;
  absl::Status ZeroMambaSlot(SlotId slot) override;

  void* k(int rank, int layer) override { return kv_bufs_[rank][layer][0].data(); }
  void* v(int rank, int layer) override { return kv_bufs_[rank][layer][1].data(); }
  float* conv(int rank, int layer) override { return conv_bufs_[rank][layer].as<float>(); }
  float* ssm(int rank, int layer) override { return ssm_bufs_[rank][layer].as<float>(); }

  // Bytes allocated for all tensors of all ranks.
  size_t TotalBytes() const;

 private:
  BackendCacheMemory(const KvLayout& kv, const MambaLayout& mamba, std::vector<Backend*> backends)
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

#endif  // HC_WORKER_RUNTIME_BACKEND_CACHE_MEMORY_H_
