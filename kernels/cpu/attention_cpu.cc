// CPU paged attention and KV write (see kernels/attention.h).
//
// Blocked ("flash") attention. The work is cut into tasks of (sequence, KV
// head, block of queries); a task holds the rows of all query heads of the
// KV head's GQA group for its queries (row = query * group + head) and walks
// the keys in blocks of kKeyBlock positions aligned to position 0:
//   - the block's keys and values are gathered once through the block table
//     (bf16 widened here), keys transposed [head_dim, kKeyBlock];
//   - S = Q K^T for all rows (simd::TileGemm), masked only in blocks that
//     reach past a row's own position (the diagonal);
//   - online softmax per row: running max m and sum l, O rescaled by
//     exp(m_old - m_new) when the max moves, P = exp(S - m) (simd::Exp);
//   - O += P V (simd::TileGemm); at the end out = O / l.
// Decode (one query per sequence) is the same task with `group` rows: every
// key and value of the KV head is read once for all its query heads.
//
// Determinism: a row's arithmetic depends only on its own query and the key
// blocks up to its position (blocks are aligned to absolute positions; a
// block past a row's position adds exactly nothing: weight 0, rescale by
// exp(0) = 1), not on the task it shares or the thread that runs it. Tasks
// write disjoint outputs, so hc::ParallelFor over tasks changes no bit.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "common/intra_op.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/cpu_kernels_simd.h"
#include "kernels/cpu/simd_tile.h"
#include "kernels/half.h"

namespace hc::kernels {
namespace {

using simd::Vf;
using simd::Vi;

constexpr int kKeyBlock = 64;  // keys per block (a multiple of every W)
static_assert(kKeyBlock % 16 == 0, "GatherKeyBlock prefetches the next block per group of W keys");
constexpr int kRowsPerTask = 96;  // query rows (queries x group) per task, at least one query
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// dst[offset, offset + n) (elements of `dtype`) = src[0, n).
void StoreRow(const float* src, int64_t n, DType dtype, void* dst, int64_t offset) {
  if (dtype == DType::kF32) {
    std::memcpy(static_cast<float*>(dst) + offset, src, sizeof(float) * n);
    return;
  }
  uint16_t* d = static_cast<uint16_t*>(dst) + offset;
  for (int64_t i = 0; i < n; ++i) d[i] = F32ToBf16(src[i]);
}

struct Task {
  int seq;
  int kv_head;
  int q0;  // first query (row of the sequence) of the block
  int nq;  // queries in the block
};

// Everything a task reads, fixed for one PagedAttention call.
struct Call {
  const AttentionArgs* args;
  const AttentionBatch* batch;
  const PagedKvCache* cache;
  int group;  // query heads per KV head
  // Sequences with several query blocks per KV head have their key blocks
  // gathered once into `packed` (PackedBlock); pack_offset[s] < 0: gathered
  // per task.
  const float* packed;
  const int64_t* pack_offset;
};

// Per-thread work buffers, sized for the largest task.
struct Scratch {
  explicit Scratch(int rows, int hd)
      : q(static_cast<size_t>(rows) * hd),
        o(q.size()),
        s(static_cast<size_t>(rows) * kKeyBlock),
        kt(static_cast<size_t>(hd) * kKeyBlock),
        v(kt.size()),
        m(rows),
        l(rows) {}
  std::vector<float> q, o, s, kt, v, m, l;
};

// Lane j of the outputs of stage h of the W x W block-swap transpose
// (TransposeStore): the first takes a[j] where bit h of j is clear, else
// b[j - h]; the second a[j + h] where clear, else b[j] (indices >= W select
// from b).
constexpr int SwapIndex(int w, int h, bool second, int j) {
  const bool clear = (j & h) == 0;
  return second ? (clear ? j + h : w + j) : (clear ? j : w + j - h);
}

template <int W, int H, bool kSecond, size_t... J>
HC_SIMD_INLINE Vf<W> SwapLanes(Vf<W> a, Vf<W> b, std::index_sequence<J...>) {
  return __builtin_shufflevector(a, b, SwapIndex(W, H, kSecond, J)...);
}

// Stages H, H/2, ..., 1: swap the off-diagonal H x H blocks of row pairs
// (i, i + H).
template <int W, int H>
HC_SIMD_INLINE void TransposeStages(Vf<W> (&rows)[W]) {
  if constexpr (H >= 1) {
    constexpr auto lanes = std::make_index_sequence<W>{};
#pragma GCC unroll 16
    for (int i = 0; i < W; ++i) {
      if ((i & H) != 0) continue;
      const Vf<W> a = rows[i], b = rows[i + H];
      rows[i] = SwapLanes<W, H, false>(a, b, lanes);
      rows[i + H] = SwapLanes<W, H, true>(a, b, lanes);
    }
    TransposeStages<W, H / 2>(rows);
  }
}

// dst[d * ld + j] = rows[j][d] for a W x W block: log2(W) rounds of W
// two-source shuffles instead of W * W scalar strided stores (the scalar
// transpose was ~75% of a decode step's attention time).
template <int W>
HC_SIMD_INLINE void TransposeStore(Vf<W> (&rows)[W], float* dst, int64_t ld) {
  TransposeStages<W, W / 2>(rows);
#pragma GCC unroll 16
  for (int d = 0; d < W; ++d) simd::Store<W>(dst + d * ld, rows[d]);
}

// Element `d` of key/value row `off` of the cache, as fp32.
HC_SIMD_INLINE float CacheAt(const void* base, DType dtype, int64_t off) {
  return dtype == DType::kF32 ? static_cast<const float*>(base)[off]
                              : Bf16ToF32(static_cast<const uint16_t*>(base)[off]);
}

// W bf16 values widened to fp32 (exact: a bf16 is the high half of its fp32).
template <int W>
HC_SIMD_INLINE Vf<W> LoadBf16(const uint16_t* p) {
  typedef uint16_t U16 __attribute__((vector_size(W * sizeof(uint16_t))));
  U16 u;
  std::memcpy(&u, p, sizeof u);
  return (Vf<W>)(__builtin_convertvector(u, Vi<W>) << 16);
}

// Element offset in the cache of position `pos`'s row of KV head `kv_head`.
HC_SIMD_INLINE int64_t KeyRowOffset(const PagedKvCache& cache, const int32_t* table, int kv_head,
                                    int pos) {
  const int64_t slot = static_cast<int64_t>(table[pos / cache.block_size]) * cache.block_size +
                       pos % cache.block_size;
  return slot * cache.num_kv_heads * cache.head_dim +
         static_cast<int64_t>(kv_head) * cache.head_dim;
}

// Asks for keys and values [j0, j0 + nk) of one KV head to be brought into L2
// ahead of their gather. A decode task reads each key row once, rows of one
// KV head are hd elements in every kv_row (a strided walk through the block
// table's blocks that the hardware prefetcher does not run ahead of); without
// this the gather waited on memory (decode step, 8 sequences: 5.5 GB/s).
HC_SIMD_INLINE void PrefetchKeyBlock(const PagedKvCache& cache, const int32_t* table, int kv_head,
                                     int j0, int nk) {
  const int64_t elt = cache.dtype == DType::kF32 ? 4 : 2;
  const int64_t row_bytes = cache.head_dim * elt;
  const char* k = static_cast<const char*>(cache.k);
  const char* v = static_cast<const char*>(cache.v);
  for (int j = 0; j < nk; ++j) {
    const int64_t off = KeyRowOffset(cache, table, kv_head, j0 + j) * elt;
    for (int64_t b = 0; b < row_bytes; b += 64) {
      __builtin_prefetch(k + off + b, 0, 2);
      __builtin_prefetch(v + off + b, 0, 2);
    }
  }
}

// Keys [j0, j0 + nk) of one KV head: kt[d * kKeyBlock + j] (transposed) and
// v[j * hd + d], fp32; columns / rows nk..kKeyBlock-1 zeroed (never stale
// cache contents, which may be NaN). Pure data movement: the values are the
// cache's, whatever path moves them. Meanwhile keys [j0 + kKeyBlock,
// j0 + kKeyBlock + next_nk) (the task's next block) are prefetched W keys per
// group of W gathered: spread over the block's work, as a burst of the whole
// block's prefetches before it found the miss buffers full (decode attention,
// nemotron-moe-small, 8 sequences, fp32: 1.1-1.2 -> 0.93-1.04 ms per step).
template <int W>
HC_SIMD_INLINE void GatherKeyBlock(const PagedKvCache& cache, const int32_t* table, int kv_head,
                                   int j0, int nk, float* kt, float* v, int next_nk = 0) {
  const int hd = cache.head_dim;
  const auto offset = [&](int j) { return KeyRowOffset(cache, table, kv_head, j0 + j); };
  const bool f32 = cache.dtype == DType::kF32;
  // Keys in groups of W, dims in groups of W: W x W transposes. (A next block
  // exists only after a full one, and kKeyBlock is a multiple of W, so the
  // groups cover every next key the prefetch below asks for.)
  const int jw = nk - nk % W, dw = hd - hd % W;
  for (int j = 0; j < jw; j += W) {
    // The next block's keys j..j+W-1, a group at a time (a burst of the whole
    // block's prefetches at once found the miss buffers full).
    if (j < next_nk) {
      PrefetchKeyBlock(cache, table, kv_head, j0 + kKeyBlock + j, std::min(W, next_nk - j));
    }
    int64_t off[W];
    for (int r = 0; r < W; ++r) off[r] = offset(j + r);
    for (int d = 0; d < dw; d += W) {
      Vf<W> rows[W];
      if (f32) {
#pragma GCC unroll 16
        for (int r = 0; r < W; ++r) {
          rows[r] = simd::Load<W>(static_cast<const float*>(cache.k) + off[r] + d);
        }
      } else {
#pragma GCC unroll 16
        for (int r = 0; r < W; ++r) {
          rows[r] = LoadBf16<W>(static_cast<const uint16_t*>(cache.k) + off[r] + d);
        }
      }
      TransposeStore<W>(rows, kt + static_cast<int64_t>(d) * kKeyBlock + j, kKeyBlock);
    }
    for (int r = 0; r < W; ++r) {
      for (int d = dw; d < hd; ++d)
        kt[d * kKeyBlock + j + r] = CacheAt(cache.k, cache.dtype, off[r] + d);
    }
  }
  for (int j = jw; j < nk; ++j) {
    const int64_t off = offset(j);
    for (int d = 0; d < hd; ++d) kt[d * kKeyBlock + j] = CacheAt(cache.k, cache.dtype, off + d);
  }
  for (int j = 0; j < nk; ++j) {
    const int64_t off = offset(j);
    float* vj = v + static_cast<size_t>(j) * hd;
    if (f32) {
      // Inline vector copies: a memcpy call per 256-byte row was a quarter of
      // the decode attention time.
      const float* vs = static_cast<const float*>(cache.v) + off;
      int d = 0;
      for (; d + W <= hd; d += W) simd::Store<W>(vj + d, simd::Load<W>(vs + d));
      for (; d < hd; ++d) vj[d] = vs[d];
    } else {
      const uint16_t* vs = static_cast<const uint16_t*>(cache.v) + off;
      int d = 0;
      for (; d + W <= hd; d += W) simd::Store<W>(vj + d, LoadBf16<W>(vs + d));
      for (; d < hd; ++d) vj[d] = Bf16ToF32(vs[d]);
    }
  }
  if (nk < kKeyBlock) {
    for (int d = 0; d < hd; ++d) std::fill(kt + d * kKeyBlock + nk, kt + (d + 1) * kKeyBlock, 0.0f);
    std::fill(v + static_cast<size_t>(nk) * hd, v + static_cast<size_t>(kKeyBlock) * hd, 0.0f);
  }
}

template <int W>
HC_SIMD_INLINE void AttendTask(const Call& call, const Task& task, Scratch& sc) {
  const AttentionArgs& a = *call.args;
  const PagedKvCache& cache = *call.cache;
  const int hd = cache.head_dim, g = call.group;
  const int rows = task.nq * g;
  const int begin = call.batch->seqs.query_start_loc[task.seq];
  const int computed = call.batch->num_computed_tokens[task.seq];
  const int32_t* table =
      call.batch->block_tables + static_cast<int64_t>(task.seq) * call.batch->max_blocks_per_seq;
  float* q = sc.q.data();
  float* o = sc.o.data();
  float* s = sc.s.data();
  for (int qi = 0; qi < task.nq; ++qi) {
    for (int hh = 0; hh < g; ++hh) {
      const float* src =
          a.q.row(begin + task.q0 + qi) + static_cast<int64_t>(task.kv_head * g + hh) * hd;
      float* dst = q + static_cast<size_t>(qi * g + hh) * hd;
      for (int d = 0; d < hd; ++d) dst[d] = src[d] * a.scale;
    }
  }
  std::fill_n(o, static_cast<size_t>(rows) * hd, 0.0f);
  std::fill_n(sc.m.data(), rows, kNegInf);
  std::fill_n(sc.l.data(), rows, 0.0f);
  Vi<W> iota;
  for (int i = 0; i < W; ++i) iota[i] = i;

  const int ctx = computed + call.batch->seqs.query_start_loc[task.seq + 1] - begin;
  const int num_key_blocks = (ctx + kKeyBlock - 1) / kKeyBlock;
  const int64_t pack_offset = call.pack_offset[task.seq];
  const float* pack = pack_offset >= 0 ? call.packed + pack_offset : nullptr;
  const int first_pos = computed + task.q0;      // position of the block's first query
  const int last_pos = first_pos + task.nq - 1;  // and of its last
  for (int j0 = 0; j0 <= last_pos; j0 += kKeyBlock) {
    const int nk = std::min(kKeyBlock, last_pos + 1 - j0);
    const float* kt = sc.kt.data();
    const float* v = sc.v.data();
    if (pack != nullptr) {
      kt = pack + (static_cast<int64_t>(task.kv_head) * num_key_blocks + j0 / kKeyBlock) * 2 * hd *
                      kKeyBlock;
      v = kt + hd * kKeyBlock;
    } else {
      const int next_nk = std::max(0, std::min(kKeyBlock, last_pos + 1 - j0 - kKeyBlock));
      GatherKeyBlock<W>(cache, table, task.kv_head, j0, nk, sc.kt.data(), sc.v.data(), next_nk);
    }
    simd::TileGemm<W>(rows, kKeyBlock, hd, q, hd, kt, kKeyBlock, s, kKeyBlock, false);
    // Some row sees only part of this block: mask per row.
    const bool diagonal = j0 + kKeyBlock > first_pos + 1;
    for (int r = 0; r < rows; ++r) {
      float* sr = s + static_cast<size_t>(r) * kKeyBlock;
      // Keys of this block row r sees: positions j0 .. its own.
      const int visible = first_pos + r / g + 1 - j0;
      Vf<W> mx = simd::Splat<W>(kNegInf);
      for (int c = 0; c < kKeyBlock; c += W) {
        Vf<W> x = simd::Load<W>(sr + c);
        if (diagonal) {
          x = simd::Select<W>(iota + c >= visible, simd::Splat<W>(kNegInf), x);
          simd::Store<W>(sr + c, x);
        }
        mx = simd::Max<W>(mx, x);
      }
      const float m_old = sc.m[r];
      const float m_new = std::max(m_old, simd::HorizontalMax<W>(mx));
      Vf<W> sum = simd::Splat<W>(0.0f);
      for (int c = 0; c < kKeyBlock; c += W) {
        const Vf<W> p = simd::Exp<W>(simd::Load<W>(sr + c) - m_new);
        simd::Store<W>(sr + c, p);
        sum = sum + p;
      }
      if (m_new != m_old) {
        // m_old = -inf (first block): O and l are still 0, alpha = 0.
        const float alpha = std::exp(m_old - m_new);
        float* orow = o + static_cast<size_t>(r) * hd;
        for (int d = 0; d < hd; ++d) orow[d] *= alpha;
        sc.l[r] *= alpha;
        sc.m[r] = m_new;
      }
      sc.l[r] += simd::HorizontalSum<W>(sum);
    }
    simd::TileGemm<W>(rows, hd, nk, s, kKeyBlock, v, hd, o, hd, true);
  }
  for (int qi = 0; qi < task.nq; ++qi) {
    for (int hh = 0; hh < g; ++hh) {
      const int r = qi * g + hh;
      const float inv = 1.0f / sc.l[r];
      const float* orow = o + static_cast<size_t>(r) * hd;
      float* dst =
          a.out.row(begin + task.q0 + qi) + static_cast<int64_t>(task.kv_head * g + hh) * hd;
      for (int d = 0; d < hd; ++d) dst[d] = orow[d] * inv;
    }
  }
}

// Key block `block` of KV head `kv_head` of sequence `seq` into its place in
// call.packed: [kv_head][block][kt | v], each part kKeyBlock * head_dim.
template <int W>
HC_SIMD_INLINE void PackKeyBlock(const Call& call, int seq, int kv_head, int block) {
  const PagedKvCache& cache = *call.cache;
  const int hd = cache.head_dim;
  const int begin = call.batch->seqs.query_start_loc[seq];
  const int ctx =
      call.batch->num_computed_tokens[seq] + call.batch->seqs.query_start_loc[seq + 1] - begin;
  const int num_key_blocks = (ctx + kKeyBlock - 1) / kKeyBlock;
  float* kt = const_cast<float*>(call.packed) + call.pack_offset[seq] +
              (static_cast<int64_t>(kv_head) * num_key_blocks + block) * 2 * hd * kKeyBlock;
  const int32_t* table =
      call.batch->block_tables + static_cast<int64_t>(seq) * call.batch->max_blocks_per_seq;
  const int j0 = block * kKeyBlock;
  GatherKeyBlock<W>(cache, table, kv_head, j0, std::min(kKeyBlock, ctx - j0), kt,
                    kt + hd * kKeyBlock);
}

// The first key block of a task that gathers its own (as AttendTask
// prefetches each next block while it works on one).
void PrefetchTaskStart(const Call& call, const Task& task) {
  if (call.pack_offset[task.seq] >= 0) return;
  const AttentionBatch& batch = *call.batch;
  const int last_pos = batch.num_computed_tokens[task.seq] + task.q0 + task.nq - 1;
  PrefetchKeyBlock(*call.cache,
                   batch.block_tables + static_cast<int64_t>(task.seq) * batch.max_blocks_per_seq,
                   task.kv_head, 0, std::min(kKeyBlock, last_pos + 1));
}

using TaskFn = void (*)(const Call&, const Task&, Scratch&);
using PackFn = void (*)(const Call&, int, int, int);

#if defined(__x86_64__)
HC_TARGET_AVX512 void AttendTaskAvx512(const Call& c, const Task& t, Scratch& s) {
  AttendTask<16>(c, t, s);
}
HC_TARGET_AVX2 void AttendTaskAvx2(const Call& c, const Task& t, Scratch& s) {
  AttendTask<8>(c, t, s);
}
#endif
// Packing does not depend on the vector width.
void PackKeyBlockFn(const Call& c, int seq, int kv_head, int block) {
  PackKeyBlock<4>(c, seq, kv_head, block);
}
void AttendTaskPortable(const Call& c, const Task& t, Scratch& s) { AttendTask<4>(c, t, s); }

TaskFn PickTaskFn(simd::SimdWidth width) {
  switch (simd::SimdLanes(width)) {
#if defined(__x86_64__)
    case 16:
      return AttendTaskAvx512;
    case 8:
      return AttendTaskAvx2;
#endif
    default:
      return AttendTaskPortable;
  }
}

class CpuAttention final : public AttentionKernels {
 public:
  explicit CpuAttention(simd::SimdWidth width) : task_fn_(PickTaskFn(width)) {}

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
    const int hkv = cache.num_kv_heads;
    const int group = a.num_q_heads / hkv;
    const int queries_per_task = std::max(1, kRowsPerTask / group);
    std::vector<Task> tasks;
    for (int s = 0; s < batch.seqs.num_seqs; ++s) {
      const int len = batch.seqs.query_start_loc[s + 1] - batch.seqs.query_start_loc[s];
      for (int kvh = 0; kvh < hkv; ++kvh) {
        for (int q0 = 0; q0 < len; q0 += queries_per_task) {
          tasks.push_back({s, kvh, q0, std::min(queries_per_task, len - q0)});
        }
      }
    }
    // Pack the key blocks of sequences with more than one query block per KV
    // head (each block would otherwise be gathered by every one of them).
    const int hd = cache.head_dim;
    const int64_t block_floats = 2 * static_cast<int64_t>(hd) * kKeyBlock;
    std::vector<int64_t> pack_offset(batch.seqs.num_seqs, -1);
    std::vector<std::pair<int, int>> pack_units;  // (seq, key blocks)
    int64_t packed_floats = 0;
    for (int s = 0; s < batch.seqs.num_seqs; ++s) {
      const int len = batch.seqs.query_start_loc[s + 1] - batch.seqs.query_start_loc[s];
      if (len <= queries_per_task) continue;
      const int blocks = (batch.num_computed_tokens[s] + len + kKeyBlock - 1) / kKeyBlock;
      pack_offset[s] = packed_floats;
      packed_floats += hkv * blocks * block_floats;
      pack_units.emplace_back(s, blocks);
    }
    std::vector<float> packed(packed_floats);
    const Call call{&a, &batch, &cache, group, packed.data(), pack_offset.data()};
    for (const std::pair<int, int>& unit : pack_units) {
      const int s = unit.first, blocks = unit.second;
      ParallelFor(static_cast<int64_t>(hkv) * blocks, 4, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
          PackKeyBlockFn(call, s, static_cast<int>(i / blocks), static_cast<int>(i % blocks));
        }
      });
    }
    const TaskFn fn = task_fn_;
    ParallelFor(static_cast<int64_t>(tasks.size()), 1, [&](int64_t lo, int64_t hi) {
      Scratch scratch(queries_per_task * group, cache.head_dim);
      for (int64_t i = lo; i < hi; ++i) {
        if (i + 1 < hi) PrefetchTaskStart(call, tasks[i + 1]);
        fn(call, tasks[i], scratch);
      }
    });
  }

 private:
  const TaskFn task_fn_;
};

}  // namespace

std::unique_ptr<AttentionKernels> CreateCpuAttentionKernels(simd::SimdWidth width) {
  return std::make_unique<CpuAttention>(width);
}

std::unique_ptr<AttentionKernels> CreateCpuAttentionKernels() {
  return CreateCpuAttentionKernels(simd::SimdWidth::kAuto);
}

}  // namespace hc::kernels
