// CPU paged attention and KV write (see kernels/attention.h).
//
// For each query and head: scores over the sequence's positions 0..p read
// through the block table, an exact two-pass softmax (max, then exp-sum), and
// the weighted sum of V. fp32 throughout.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"

namespace hc::kernels {
namespace {

class CpuAttention final : public AttentionKernels {
 public:
  void WriteKv(int num_tokens, const int32_t* slot_mapping, ConstRows k, ConstRows v,
               const PagedKvCache& cache) const override {
    const int64_t row = static_cast<int64_t>(cache.num_kv_heads) * cache.head_dim;
    for (int t = 0; t < num_tokens; ++t) {
      const int64_t slot = slot_mapping[t];
      std::memcpy(cache.k + slot * row, k.row(t), sizeof(float) * row);
      std::memcpy(cache.v + slot * row, v.row(t), sizeof(float) * row);
    }
  }

  void PagedAttention(const AttentionArgs& a, const AttentionBatch& batch,
                      const PagedKvCache& cache) const override {
    const int hd = cache.head_dim;
    const int hkv = cache.num_kv_heads;
    const int q_per_kv = a.num_q_heads / hkv;
    const int64_t kv_row = static_cast<int64_t>(hkv) * hd;
    std::vector<float> scores;
    std::vector<const float*> k_rows, v_rows;  // per position, the slot's row
    for (int s = 0; s < batch.seqs.num_seqs; ++s) {
      const int begin = batch.seqs.query_start_loc[s];
      const int len = batch.seqs.query_start_loc[s + 1] - begin;
      if (len <= 0) continue;
      const int ctx = batch.num_computed_tokens[s] + len;
      const int32_t* bt = batch.block_tables + static_cast<int64_t>(s) * batch.max_blocks_per_seq;
      k_rows.resize(ctx);
      v_rows.resize(ctx);
      for (int j = 0; j < ctx; ++j) {
        const int64_t slot =
            static_cast<int64_t>(bt[j / cache.block_size]) * cache.block_size + j % cache.block_size;
        k_rows[j] = cache.k + slot * kv_row;
        v_rows[j] = cache.v + slot * kv_row;
      }
      scores.resize(ctx);
      for (int i = 0; i < len; ++i) {
        const int visible = batch.num_computed_tokens[s] + i + 1;
        for (int h = 0; h < a.num_q_heads; ++h) {
          const int64_t kv_off = static_cast<int64_t>(h / q_per_kv) * hd;
          const float* q = a.q.row(begin + i) + static_cast<int64_t>(h) * hd;
          float max_score = -INFINITY;
          for (int j = 0; j < visible; ++j) {
            const float* kj = k_rows[j] + kv_off;
            float dot = 0.0f;
            for (int d = 0; d < hd; ++d) dot += q[d] * kj[d];
            scores[j] = dot * a.scale;
            max_score = std::max(max_score, scores[j]);
          }
          float denom = 0.0f;
          for (int j = 0; j < visible; ++j) {
            scores[j] = std::exp(scores[j] - max_score);
            denom += scores[j];
          }
          float* out = a.out.row(begin + i) + static_cast<int64_t>(h) * hd;
          std::fill_n(out, hd, 0.0f);
          for (int j = 0; j < visible; ++j) {
            const float* vj = v_rows[j] + kv_off;
            const float pj = scores[j];
            for (int d = 0; d < hd; ++d) out[d] += pj * vj[d];
          }
          const float inv = 1.0f / denom;
          for (int d = 0; d < hd; ++d) out[d] *= inv;
        }
      }
    }
  }
};

}  // namespace

std::unique_ptr<AttentionKernels> CreateCpuAttentionKernels() {
  return std::make_unique<CpuAttention>();
}

}  // namespace hc::kernels
