// CacheMemory in host memory (fp32), used by the CPU backend and by the cache
// library's tests. Tensors follow the layouts documented in cache_memory.h.
#ifndef HC_WORKER_RUNTIME_HOST_CACHE_MEMORY_H_
#define HC_WORKER_RUNTIME_HOST_CACHE_MEMORY_H_

#include <array>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/runtime/cache_memory.h"

namespace hc::runtime {

class HostCacheMemory final : public CacheMemory {
 public:
  // Allocates zeroed fp32 tensors for `num_ranks` shards of the given layouts.
  // Fails with INVALID_ARGUMENT for a non-fp32 dtype or a non-positive size.
  static absl::StatusOr<std::unique_ptr<HostCacheMemory>> Create(const KvLayout& kv,
                                                                 const MambaLayout& mamba,
                                                                 int num_ranks);

  const KvLayout& kv_layout() const override { return kv_; }
  const MambaLayout& mamba_layout() const override { return mamba_; }
  int num_ranks() const override { return num_ranks_; }

  absl::Status CopyKvBlock(BlockId src, BlockId dst, int num_tokens) override;
  absl::Status CopyMambaSlot(SlotId src, SlotId dst) override;
  absl::Status ZeroMambaSlot(SlotId slot) override;

  // Raw tensors of one rank and layer (layer index within its group).
  float* k(int rank, int layer) override {
    return kv_data_[Index(rank, layer, kv_.num_layers)][0].data();
  }
  float* v(int rank, int layer) override {
    return kv_data_[Index(rank, layer, kv_.num_layers)][1].data();
  }
  float* conv(int rank, int layer) override {
    return conv_data_[Index(rank, layer, mamba_.num_layers)].data();
  }
  float* ssm(int rank, int layer) override {
    return ssm_data_[Index(rank, layer, mamba_.num_layers)].data();
  }

  size_t TotalBytes() const;

 private:
  HostCacheMemory(const KvLayout& kv, const MambaLayout& mamba, int num_ranks);
  static size_t Index(int rank, int layer, int num_layers) {
    return static_cast<size_t>(rank) * num_layers + layer;
  }

  KvLayout kv_;
  MambaLayout mamba_;
  int num_ranks_;
  std::vector<std::array<std::vector<float>, 2>> kv_data_;  // [rank * layers + layer][K|V]
  std::vector<std::vector<float>> conv_data_;               // [rank * layers + layer]
  std::vector<std::vector<float>> ssm_data_;
};

}  // namespace hc::runtime

#endif  // HC_WORKER_RUNTIME_HOST_CACHE_MEMORY_H_
