// Paged attention family: KV write and varlen causal attention over a paged
// KV cache with GQA.
//
// KV cache of one layer (worker/runtime/cache_memory.h):
//   K, V: [num_blocks, block_size, num_kv_heads, head_dim] row-major, of
//   `dtype` fp32 or bf16 (WriteKv rounds to nearest even; PagedAttention
//   widens to fp32 and computes the scores and softmax in fp32).
// Token position `pos` of a sequence with block table `bt` lives in slot
//   bt[pos / block_size] * block_size + pos % block_size.
#ifndef HC_KERNELS_ATTENTION_H_
#define HC_KERNELS_ATTENTION_H_

#include <cstdint>

#include "kernels/dtype.h"
#include "kernels/varlen.h"

namespace hc::kernels {

struct PagedKvCache {
  void* k = nullptr;
  void* v = nullptr;
  DType dtype = DType::kF32;  // kF32 or kBF16
  int block_size = 16;
  int num_kv_heads = 0;
  int head_dim = 0;
};

struct AttentionBatch {
  VarlenBatch seqs;
  // [num_seqs]: tokens of the sequence already in the cache before this batch.
  // Query row i of sequence s has position num_computed_tokens[s] + i.
  const int32_t* num_computed_tokens = nullptr;
  // [num_seqs, max_blocks_per_seq] row-major; block ids of each sequence.
  const int32_t* block_tables = nullptr;
  int max_blocks_per_seq = 0;
};

struct AttentionArgs {
  int num_q_heads = 0;  // REQUIRES: num_q_heads % cache.num_kv_heads == 0
  float scale = 1.0f;   // usually head_dim^-0.5
  ConstRows q;          // [T, num_q_heads * head_dim]
  Rows out;             // [T, num_q_heads * head_dim]; must not alias q
};

// Thread-safety: stateless; concurrent calls must write distinct slots/outputs.
class AttentionKernels {
 public:
  virtual ~AttentionKernels() = default;

  // Scatters new keys/values: row t goes to slot slot_mapping[t] of the cache
  // (slot = block * block_size + offset). k, v: [T, num_kv_heads * head_dim].
  virtual void WriteKv(int num_tokens, const int32_t* slot_mapping, ConstRows k, ConstRows v,
                       const PagedKvCache& cache) const = 0;

  // Causal attention, bottom-right aligned: query i of sequence s (position
  // p = num_computed_tokens[s] + i) attends to positions 0..p of that sequence,
  // read through its block table. REQUIRES: the KV of all those positions,
  // including this batch's tokens, is already in the cache (WriteKv first).
  // Query head h reads KV head h / (num_q_heads / num_kv_heads).
  virtual void PagedAttention(const AttentionArgs& args, const AttentionBatch& batch,
                              const PagedKvCache& cache) const = 0;
};

}  // namespace hc::kernels

#endif  // HC_KERNELS_ATTENTION_H_
