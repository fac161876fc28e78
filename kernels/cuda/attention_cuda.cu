// CUDA paged attention and KV write (see kernels/attention.h): fp32 math over
// an fp32 or bf16 cache (T = float or uint16_t bf16 bits; widened on staging).
//
// PagedAttention: one block of kWarps warps per (sequence, query head, split
// z); the block takes query tiles z, z + splits, ... of kQueryTile rows of its
// sequence (query counts live on the device only, so the grid is sized by a
// split count, not by lengths). Per query tile it walks the visible keys in
// tiles of 32, staged with their values in shared memory through the block
// table, and keeps an online softmax per query (running max, running sum,
// rescaled accumulator): lane j scores key j of the tile; the output
// accumulator is spread over the lanes by head dimension.
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>

#include "kernels/cuda/cuda_util.cuh"

namespace hc::kernels::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kQueriesPerWarp = 4;
constexpr int kQueryTile = kWarps * kQueriesPerWarp;
constexpr int kKeyTile = 32;
constexpr int kMaxHeadDim = 256;
constexpr int kAccPerLane = kMaxHeadDim / 32;

// Grid (tokens, element blocks).
template <typename T>
__global__ void WriteKvKernel(const int32_t* slot_mapping, const float* k, int64_t k_stride,
                              const float* v, int64_t v_stride, T* kc, T* vc, int64_t row) {
  const int t = blockIdx.x;
  const int64_t i = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (i >= row) return;
  const int64_t slot = slot_mapping[t];
  StoreF32(kc + slot * row + i, k[t * k_stride + i]);
  StoreF32(vc + slot * row + i, v[t * v_stride + i]);
}

struct AttnDev {
  int num_q_heads, q_per_kv, hd, block_size, num_kv_heads, max_blocks, splits;
  float scale;
  const float* q;
  int64_t q_stride;
  float* out;
  int64_t out_stride;
  const void* kc;  // T
  const void* vc;
  const int32_t* qsl;
  const int32_t* computed;
  const int32_t* block_tables;
};

// Shared: Q tile [kQueryTile][hd], K tile [kKeyTile][hd + 1], V tile [kKeyTile][hd].
template <typename T>
__global__ void __launch_bounds__(kWarps * 32) PagedAttentionKernel(AttnDev a) {
  extern __shared__ float smem[];
  const T* kc = static_cast<const T*>(a.kc);
  const T* vc = static_cast<const T*>(a.vc);
  const int hd = a.hd, k_pad = hd + 1;
  float* Qs = smem;
  float* Ks = Qs + kQueryTile * hd;
  float* Vs = Ks + kKeyTile * k_pad;
  const int s = blockIdx.x / a.splits, z = blockIdx.x % a.splits;
  const int h = blockIdx.y;
  const int kvh = h / a.q_per_kv;
  const int begin = a.qsl[s], len = a.qsl[s + 1] - begin;
  const int computed = a.computed[s];
  const int32_t* bt = a.block_tables + static_cast<int64_t>(s) * a.max_blocks;
  const int64_t kv_row = static_cast<int64_t>(a.num_kv_heads) * hd;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  for (int i0 = z * kQueryTile; i0 < len; i0 += a.splits * kQueryTile) {
    const int rows = min(kQueryTile, len - i0);
    __syncthreads();  // previous tile's readers of Qs are done
    for (int i = tid; i < rows * hd; i += blockDim.x) {
      const int r = i / hd, d = i % hd;
      Qs[r * hd + d] =
          a.q[static_cast<int64_t>(begin + i0 + r) * a.q_stride + static_cast<int64_t>(h) * hd + d];
    }
    float m[kQueriesPerWarp], l[kQueriesPerWarp], acc[kQueriesPerWarp][kAccPerLane];
#pragma unroll
    for (int r = 0; r < kQueriesPerWarp; ++r) {
      m[r] = -INFINITY;
      l[r] = 0.0f;
#pragma unroll
      for (int e = 0; e < kAccPerLane; ++e) acc[r][e] = 0.0f;
    }
    // Keys visible to the last query of the tile: positions [0, computed + i0 + rows).
    const int keys = computed + i0 + rows;
    for (int j0 = 0; j0 < keys; j0 += kKeyTile) {
      const int kn = min(kKeyTile, keys - j0);
      __syncthreads();  // previous key tile's readers are done (and Qs is written)
      for (int i = tid; i < kn * hd; i += blockDim.x) {
        const int j = i / hd, d = i % hd;
        const int pos = j0 + j;
        const int64_t slot =
            static_cast<int64_t>(bt[pos / a.block_size]) * a.block_size + pos % a.block_size;
        const int64_t off = slot * kv_row + static_cast<int64_t>(kvh) * hd + d;
        Ks[j * k_pad + d] = ToF32(kc[off]);
        Vs[j * hd + d] = ToF32(vc[off]);
      }
      __syncthreads();
#pragma unroll
      for (int r = 0; r < kQueriesPerWarp; ++r) {
        const int qi = warp * kQueriesPerWarp + r;   // row within the query tile
        if (qi >= rows) continue;                    // warp-uniform
        const int visible = computed + i0 + qi + 1;  // keys [0, visible)
        const float* qv = Qs + qi * hd;
        float score = -INFINITY;
        if (lane < kn && j0 + lane < visible) {
          const float* kv = Ks + lane * k_pad;
          float dot = 0.0f;
          for (int d = 0; d < hd; ++d) dot += qv[d] * kv[d];
          score = dot * a.scale;
        }
        const float tile_max = WarpMax(score);
        if (tile_max == -INFINITY) continue;  // no visible key in this tile (warp-uniform)
        const float m_new = fmaxf(m[r], tile_max);
        const float corr = expf(m[r] - m_new);  // 0 when m[r] is -inf
        const float pj = score == -INFINITY ? 0.0f : expf(score - m_new);
        l[r] = l[r] * corr + WarpSum(pj);
        m[r] = m_new;
#pragma unroll
        for (int e = 0; e < kAccPerLane; ++e) acc[r][e] *= corr;
        for (int j = 0; j < kn; ++j) {
          const float p = __shfl_sync(0xffffffffu, pj, j);
          const float* vj = Vs + j * hd;
#pragma unroll
          for (int e = 0; e < kAccPerLane; ++e) {
            const int d = lane + 32 * e;
            if (d < hd) acc[r][e] += p * vj[d];
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kQueriesPerWarp; ++r) {
      const int qi = warp * kQueriesPerWarp + r;
      if (qi >= rows) continue;
      float* o = a.out + static_cast<int64_t>(begin + i0 + qi) * a.out_stride +
                 static_cast<int64_t>(h) * hd;
      const float inv = 1.0f / l[r];
#pragma unroll
      for (int e = 0; e < kAccPerLane; ++e) {
        const int d = lane + 32 * e;
        if (d < hd) o[d] = acc[r][e] * inv;
      }
    }
  }
}

class CudaAttention final : public AttentionKernels {
 public:
  explicit CudaAttention(const CudaKernelOptions& o) : o_(o) {
    UseDevice(o.device);
    cudaDeviceGetAttribute(&num_sms_, cudaDevAttrMultiProcessorCount, o.device);
  }

  void WriteKv(int num_tokens, const int32_t* slot_mapping, ConstRows k, ConstRows v,
               const PagedKvCache& cache) const override {
    const int64_t row = static_cast<int64_t>(cache.num_kv_heads) * cache.head_dim;
    if (num_tokens <= 0 || row <= 0) return;
    UseDevice(o_.device);
    const dim3 grid(num_tokens, CeilDiv(row, 128));
    if (cache.dtype == DType::kBF16) {
      WriteKvKernel<<<grid, 128, 0, o_.stream>>>(slot_mapping, k.data, k.stride, v.data, v.stride,
                                                 static_cast<uint16_t*>(cache.k),
                                                 static_cast<uint16_t*>(cache.v), row);
    } else {
      WriteKvKernel<<<grid, 128, 0, o_.stream>>>(slot_mapping, k.data, k.stride, v.data, v.stride,
                                                 static_cast<float*>(cache.k),
                                                 static_cast<float*>(cache.v), row);
    }
    CheckLaunch("WriteKv");
  }

  void PagedAttention(const AttentionArgs& args, const AttentionBatch& batch,
                      const PagedKvCache& cache) const override {
    if (batch.seqs.num_seqs <= 0 || args.num_q_heads <= 0) return;
    HC_CHECK(cache.head_dim > 0 && cache.head_dim <= kMaxHeadDim)
        << "head_dim " << cache.head_dim << " outside (0, " << kMaxHeadDim << "]";
    HC_CHECK(cache.num_kv_heads > 0 && args.num_q_heads % cache.num_kv_heads == 0)
        << "num_q_heads " << args.num_q_heads << " not a multiple of kv heads "
        << cache.num_kv_heads;
    UseDevice(o_.device);
    const int seq_heads = batch.seqs.num_seqs * args.num_q_heads;
    // Enough blocks to fill the device twice over for a single long prefill;
    // decode batches (one query tile per sequence) get splits = 1.
    const int splits = std::clamp(2 * num_sms_ / std::max(seq_heads, 1), 1, 64);
    const AttnDev d{args.num_q_heads,
                    args.num_q_heads / cache.num_kv_heads,
                    cache.head_dim,
                    cache.block_size,
                    cache.num_kv_heads,
                    batch.max_blocks_per_seq,
                    splits,
                    args.scale,
                    args.q.data,
                    args.q.stride,
                    args.out.data,
                    args.out.stride,
                    cache.k,
                    cache.v,
                    batch.seqs.query_start_loc,
                    batch.num_computed_tokens,
                    batch.block_tables};
    const size_t bytes = sizeof(float) * (static_cast<size_t>(kQueryTile) * cache.head_dim +
                                          static_cast<size_t>(kKeyTile) * (cache.head_dim + 1) +
                                          static_cast<size_t>(kKeyTile) * cache.head_dim);
    const dim3 grid(batch.seqs.num_seqs * splits, args.num_q_heads);
    if (cache.dtype == DType::kBF16) {
      AllowSharedMemory(PagedAttentionKernel<uint16_t>, bytes, "PagedAttention");
      PagedAttentionKernel<uint16_t><<<grid, kWarps * 32, bytes, o_.stream>>>(d);
    } else {
      AllowSharedMemory(PagedAttentionKernel<float>, bytes, "PagedAttention");
      PagedAttentionKernel<float><<<grid, kWarps * 32, bytes, o_.stream>>>(d);
    }
    CheckLaunch("PagedAttention");
  }

 private:
  const CudaKernelOptions o_;
  int num_sms_ = 132;
};

}  // namespace

std::unique_ptr<AttentionKernels> CreateAttention(const CudaKernelOptions& o) {
  return std::make_unique<CudaAttention>(o);
}

}  // namespace hc::kernels::cuda
