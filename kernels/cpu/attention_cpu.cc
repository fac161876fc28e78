// CPU paged attention and KV write (see kernels/attention.h).
//
// Per sequence and KV head, the visible keys and values are gathered through
// the block table into contiguous [ctx, head_dim] / [head_dim, ctx] copies;
// then for each query head and tile of up to 64 queries: scores = Q K^T on the
// own blocked GEMM, an exact causal softmax (max, exp-sum), out = P V (GEMM).
// fp32 throughout; a bf16 cache is widened as it is gathered.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/half.h"

namespace hc::kernels {
namespace {

// dst[offset, offset + n) (elements of `dtype`) = src[0, n).
void StoreRow(const float* src, int64_t n, DType dtype, void* dst, int64_t offset) {
  if (dtype == DType::kF32) {
    std::memcpy(static_cast<float*>(dst) + offset, src, sizeof(float) * n);
    return;
  }
  uint16_t* d = static_cast<uint16_t*>(dst) + offset;
  for (int64_t i = 0; i < n; ++i) d[i] = F32ToBf16(src[i]);
}

// dst[0, n) = src[offset, offset + n) widened to fp32.
void LoadRow(const void* src, int64_t offset, int64_t n, DType dtype, float* dst) {
  if (dtype == DType::kF32) {
    std::memcpy(dst, static_cast<const float*>(src) + offset, sizeof(float) * n);
    return;
  }
  const uint16_t* s = static_cast<const uint16_t*>(src) + offset;
  for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToF32(s[i]);
}

class CpuAttention final : public AttentionKernels {
 public:
  void WriteKv(int num_tokens, const int32_t* slot_mapping, ConstRows k, ConstRows v,
               const PagedKvCache& cache) const override {
    const int64_t row = static_cast<int64_t>(cache.num_kv_heads) * cache.head_dim;
    for (int t = 0; t < num_tokens; ++t) {
      const int64_t slot = slot_mapping[t];
      StoreRow(k.row(t), row, cache.dtype, cache.k, slot * row);
      StoreRow(v.row(t), row, cache.dtype, cache.v, slot * row);
    }
  }

  void PagedAttention(const AttentionArgs& a, const AttentionBatch& batch,
                      const PagedKvCache& cache) const override {
    const int hd = cache.head_dim;
    const int hkv = cache.num_kv_heads;
    const int q_per_kv = a.num_q_heads / hkv;
    const int64_t kv_row = static_cast<int64_t>(hkv) * hd;
    std::vector<float> keys, values, values_t, scores;
    for (int s = 0; s < batch.seqs.num_seqs; ++s) {
      const int begin = batch.seqs.query_start_loc[s];
      const int len = batch.seqs.query_start_loc[s + 1] - begin;
      if (len <= 0) continue;
      const int computed = batch.num_computed_tokens[s];
      const int ctx = computed + len;
      const int32_t* bt = batch.block_tables + static_cast<int64_t>(s) * batch.max_blocks_per_seq;
      keys.resize(static_cast<size_t>(ctx) * hd);
      values.resize(static_cast<size_t>(ctx) * hd);
      // P V as a GEMM needs V transposed; worth it only for query tiles that
      // are not decode-sized.
      const bool transpose_v = len > kSmallTile;
      if (transpose_v) values_t.resize(static_cast<size_t>(hd) * ctx);
      for (int kvh = 0; kvh < hkv; ++kvh) {
        // Contiguous copies of this KV head: keys, values [ctx, hd] (values_t [hd, ctx]).
        for (int j = 0; j < ctx; ++j) {
          const int64_t slot = static_cast<int64_t>(bt[j / cache.block_size]) * cache.block_size +
                               j % cache.block_size;
          const int64_t off = slot * kv_row + static_cast<int64_t>(kvh) * hd;
          LoadRow(cache.k, off, hd, cache.dtype, keys.data() + static_cast<size_t>(j) * hd);
          LoadRow(cache.v, off, hd, cache.dtype, values.data() + static_cast<size_t>(j) * hd);
        }
        if (transpose_v) {
          for (int j = 0; j < ctx; ++j) {
            for (int d = 0; d < hd; ++d) {
              values_t[static_cast<size_t>(d) * ctx + j] = values[static_cast<size_t>(j) * hd + d];
            }
          }
        }
        for (int h = kvh * q_per_kv; h < (kvh + 1) * q_per_kv; ++h) {
          for (int i0 = 0; i0 < len; i0 += kQueryTile) {
            const int rows = std::min(kQueryTile, len - i0);
            // Row r (query i0 + r) sees positions [0, computed + i0 + r].
            const int cols = computed + i0 + rows;
            scores.resize(static_cast<size_t>(rows) * cols);
            gemm_->Gemm({.m = rows,
                         .n = cols,
                         .k = hd,
                         .a = a.q.row(begin + i0) + static_cast<int64_t>(h) * hd,
                         .lda = a.q.stride,
                         .b = keys.data(),
                         .ldb = hd,
                         .c = scores.data(),
                         .ldc = cols});
            for (int r = 0; r < rows; ++r) {
              float* sr = scores.data() + static_cast<size_t>(r) * cols;
              const int visible = computed + i0 + r + 1;
              float max_score = -INFINITY;
              for (int j = 0; j < visible; ++j) max_score = std::max(max_score, sr[j] * a.scale);
              float denom = 0.0f;
              for (int j = 0; j < visible; ++j) {
                sr[j] = std::exp(sr[j] * a.scale - max_score);
                denom += sr[j];
              }
              const float inv = 1.0f / denom;
              for (int j = 0; j < visible; ++j) sr[j] *= inv;
              for (int j = visible; j < cols; ++j) sr[j] = 0.0f;
            }
            float* out0 = a.out.row(begin + i0) + static_cast<int64_t>(h) * hd;
            if (rows > kSmallTile) {
              gemm_->Gemm({.m = rows,
                           .n = hd,
                           .k = cols,
                           .a = scores.data(),
                           .lda = cols,
                           .b = values_t.data(),
                           .ldb = ctx,
                           .c = out0,
                           .ldc = a.out.stride});
              continue;
            }
            for (int r = 0; r < rows; ++r) {  // out = sum_j p_j v_j
              float* o = out0 + static_cast<int64_t>(r) * a.out.stride;
              const float* pr = scores.data() + static_cast<size_t>(r) * cols;
              std::fill_n(o, hd, 0.0f);
              for (int j = 0; j < computed + i0 + r + 1; ++j) {
                const float* vj = values.data() + static_cast<size_t>(j) * hd;
                for (int d = 0; d < hd; ++d) o[d] += pr[j] * vj[d];
              }
            }
          }
        }
      }
    }
  }

 private:
  static constexpr int kQueryTile = 64;
  static constexpr int kSmallTile = 3;  // tiles up to this many rows skip the V transpose
  std::unique_ptr<GemmKernel> gemm_ = std::move(CreateCpuGemm(CpuGemmImpl::kBlocked)).value();
};

}  // namespace

std::unique_ptr<AttentionKernels> CreateCpuAttentionKernels() {
  return std::make_unique<CpuAttention>();
}

}  // namespace hc::kernels
