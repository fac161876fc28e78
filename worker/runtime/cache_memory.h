// Device memory of the two cache groups, shared by the cache library (which
// decides which block / slot holds what) and the model (which reads and writes
// them). The cache library only ever copies whole blocks and slots through this
// interface; the model gets raw per-rank tensors through k/v/conv/ssm. The
// implementation, BackendCacheMemory, serves every backend (CPU and CUDA).
//
// Tensor layouts, per tensor-parallel rank and per layer (row-major):
//   K, V        [num_blocks, block_size, num_kv_heads, head_dim]   (kv dtype: fp32 or bf16)
//   conv state  [num_slots, conv_dim, conv_width - 1]               (conv dtype: fp32)
//   ssm state   [num_slots, num_heads, head_dim, state_size]        (always fp32)
// Sizes in the layouts are per rank (the local shard under tensor parallel).
// Slot (token position) `pos` of a sequence with block table `bt` lives at
// block bt[pos / block_size], offset pos % block_size.
//
// Thread-safety: not thread-safe; the engine thread owns it.
#ifndef HC_WORKER_RUNTIME_CACHE_MEMORY_H_
#define HC_WORKER_RUNTIME_CACHE_MEMORY_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace hc::runtime {

using DType = kernels::DType;
using kernels::DTypeSize;

using BlockId = int32_t;
using SlotId = int32_t;

struct KvLayout {
  int num_layers = 0;  // attention layers
  int num_blocks = 0;
  int block_size = 16;   // tokens per block
  int num_kv_heads = 0;  // per rank
  int head_dim = 0;
  DType dtype = DType::kF32;

  // Elements of one block in one K (or V) tensor of one layer.
  size_t BlockElems() const { return static_cast<size_t>(block_size) * num_kv_heads * head_dim; }
};

struct MambaLayout {
  int num_layers = 0;  // Mamba layers
  int num_slots = 0;
  int conv_dim = 0;    // per rank: local d_inner + 2 * G * N (groups replicated when G == 1)
  int conv_width = 4;  // W; the state keeps W - 1 columns
  int num_heads = 0;   // per rank
  int head_dim = 0;
  int state_size = 0;  // N
  DType conv_dtype = DType::kF32;

  size_t ConvSlotElems() const { return static_cast<size_t>(conv_dim) * (conv_width - 1); }
  size_t SsmSlotElems() const { return static_cast<size_t>(num_heads) * head_dim * state_size; }
};

class CacheMemory {
 public:
  virtual ~CacheMemory() = default;

  virtual const KvLayout& kv_layout() const = 0;
  virtual const MambaLayout& mamba_layout() const = 0;
  virtual int num_ranks() const = 0;

  // Copies token rows [0, num_tokens) of block `src` into block `dst`, for K and
  // V of every attention layer on every rank. REQUIRES: src != dst, both in
  // range, 0 < num_tokens <= block_size. Used for the tail copy-on-write.
  virtual absl::Status CopyKvBlock(BlockId src, BlockId dst, int num_tokens) = 0;

  // Copies the conv and SSM state of every Mamba layer on every rank from slot
  // `src` to slot `dst`. REQUIRES: src != dst, both in range.
  virtual absl::Status CopyMambaSlot(SlotId src, SlotId dst) = 0;

  // Zeroes the state of `slot` (the initial state of a new conversation).
  virtual absl::Status ZeroMambaSlot(SlotId slot) = 0;

  // The model's view: raw tensors of one rank and layer (layer index within
  // its group), in the memory of that rank's backend (host memory on the CPU
  // backend, device memory of the rank's GPU on CUDA). K and V hold elements
  // of kv_layout().dtype; the Mamba states are fp32.
  // REQUIRES: 0 <= rank < num_ranks(), layer in range.
  virtual void* k(int rank, int layer) = 0;
  virtual void* v(int rank, int layer) = 0;
  virtual float* conv(int rank, int layer) = 0;
  virtual float* ssm(int rank, int layer) = 0;
};

}  // namespace hc::runtime

#endif  // HC_WORKER_RUNTIME_CACHE_MEMORY_H_
