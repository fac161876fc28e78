// Paged attention and KV write against full causal attention over contiguous
// copies of each sequence's keys and values.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/half.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace hc::kernels {
namespace {

using testing::MaxRelError;
using testing::RandomVector;

constexpr int kHq = 4, kHkv = 2, kHd = 8, kBs = 4, kNumBlocks = 64, kMaxBlocks = 24;
constexpr int kRow = kHkv * kHd;

// Full causal attention of queries at positions ctx - len .. ctx - 1 over
// contiguous K, V [ctx, kHkv, kHd]; GQA head mapping h / (kHq / kHkv).
std::vector<float> ReferenceAttention(const std::vector<float>& q, int len,
                                      const std::vector<float>& k, const std::vector<float>& v,
                                      int ctx, float scale) {
  std::vector<float> out(len * kHq * kHd);
  for (int i = 0; i < len; ++i) {
    const int pos = ctx - len + i;
    for (int h = 0; h < kHq; ++h) {
      const int kvh = h / (kHq / kHkv);
      std::vector<double> w(pos + 1);
      double mx = -1e300, sum = 0;
      for (int j = 0; j <= pos; ++j) {
        double dot = 0;
        for (int d = 0; d < kHd; ++d) {
          dot += double(q[(i * kHq + h) * kHd + d]) * k[(j * kHkv + kvh) * kHd + d];
        }
        w[j] = dot * scale;
        mx = std::max(mx, w[j]);
      }
      for (double& x : w) sum += (x = std::exp(x - mx));
      for (int d = 0; d < kHd; ++d) {
        double acc = 0;
        for (int j = 0; j <= pos; ++j) acc += w[j] * v[(j * kHkv + kvh) * kHd + d];
        out[(i * kHq + h) * kHd + d] = float(acc / sum);
      }
    }
  }
  return out;
}

// A KV cache tensor of `dtype` (fp32 or bf16 bits) with element access.
struct CacheTensor {
  DType dtype;
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  CacheTensor(DType t, size_t n) : dtype(t) {
    if (t == DType::kF32) {
      f32.assign(n, NAN);
    } else {
      bf16.assign(n, F32ToBf16(NAN));
    }
  }
  void* data() { return dtype == DType::kF32 ? static_cast<void*>(f32.data()) : bf16.data(); }
  void Set(size_t i, float x) {
    if (dtype == DType::kF32) {
      f32[i] = x;
    } else {
      bf16[i] = F32ToBf16(x);
    }
  }
};

// x as the cache stores it.
std::vector<float> AsStored(const std::vector<float>& x, DType dtype) {
  if (dtype == DType::kF32) return x;
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = Bf16ToF32(F32ToBf16(x[i]));
  return out;
}

void CheckVarlenBatch(DType dtype) {
  auto attn = CreateCpuAttentionKernels();
  const float scale = 1.0f / std::sqrt(float(kHd));
  // Sequences: (already computed tokens, new tokens): prefill from scratch,
  // continuation at an unaligned position, decode tokens, an empty entry, a
  // continuation longer than one 64-query tile.
  const std::vector<std::pair<int, int>> seqs = {{0, 9}, {6, 7}, {13, 1}, {3, 0}, {0, 1}, {5, 70}};
  const int S = seqs.size();
  std::vector<int32_t> block_ids(kNumBlocks);
  std::iota(block_ids.begin(), block_ids.end(), 0);
  std::shuffle(block_ids.begin(), block_ids.end(), std::mt19937(5));
  std::vector<int32_t> tables(S * kMaxBlocks, -1), qsl = {0}, computed, slot_mapping;
  int next_block = 0;
  CacheTensor k_cache(dtype, kNumBlocks * kBs * kRow), v_cache(dtype, kNumBlocks * kBs * kRow);
  std::vector<std::vector<float>> full_k(S), full_v(S);
  std::vector<float> new_k, new_v;
  for (int s = 0; s < S; ++s) {
    const auto [done, len] = seqs[s];
    const int ctx = done + len;
    for (int b = 0; b * kBs < ctx; ++b) tables[s * kMaxBlocks + b] = block_ids[next_block++];
    full_k[s] = RandomVector(ctx * kRow, 10 + s);
    full_v[s] = RandomVector(ctx * kRow, 20 + s);
    for (int pos = 0; pos < ctx; ++pos) {
      const int slot = tables[s * kMaxBlocks + pos / kBs] * kBs + pos % kBs;
      if (pos < done) {  // already cached
        for (int e = 0; e < kRow; ++e) {
          k_cache.Set(slot * kRow + e, full_k[s][pos * kRow + e]);
          v_cache.Set(slot * kRow + e, full_v[s][pos * kRow + e]);
        }
      } else {  // written by WriteKv below
        slot_mapping.push_back(slot);
        new_k.insert(new_k.end(), &full_k[s][pos * kRow], &full_k[s][(pos + 1) * kRow]);
        new_v.insert(new_v.end(), &full_v[s][pos * kRow], &full_v[s][(pos + 1) * kRow]);
      }
    }
    qsl.push_back(qsl.back() + len);
    computed.push_back(done);
  }
  const int T = qsl.back();
  const PagedKvCache cache{.k = k_cache.data(),
                           .v = v_cache.data(),
                           .dtype = dtype,
                           .block_size = kBs,
                           .num_kv_heads = kHkv,
                           .head_dim = kHd};
  attn->WriteKv(T, slot_mapping.data(), {new_k.data(), kRow}, {new_v.data(), kRow}, cache);

  const auto q = RandomVector(T * kHq * kHd, 99);
  std::vector<float> out(T * kHq * kHd, NAN);
  attn->PagedAttention({.num_q_heads = kHq,
                        .scale = scale,
                        .q = {q.data(), kHq * kHd},
                        .out = {out.data(), kHq * kHd}},
                       {.seqs = {S, qsl.data()},
                        .num_computed_tokens = computed.data(),
                        .block_tables = tables.data(),
                        .max_blocks_per_seq = kMaxBlocks},
                       cache);
  for (int s = 0; s < S; ++s) {
    const int len = seqs[s].second;
    if (len == 0) continue;
    const std::vector<float> qs(q.begin() + qsl[s] * kHq * kHd, q.begin() + qsl[s + 1] * kHq * kHd);
    // The reference sees K and V as the cache stores them (bf16-rounded).
    const auto want = ReferenceAttention(qs, len, AsStored(full_k[s], dtype),
                                         AsStored(full_v[s], dtype), seqs[s].first + len, scale);
    const std::vector<float> got(out.begin() + qsl[s] * kHq * kHd,
                                 out.begin() + qsl[s + 1] * kHq * kHd);
    EXPECT_LT(MaxRelError(got, want), 1e-5) << "sequence " << s;
  }
}

TEST(PagedAttentionTest, VarlenBatchOverShuffledBlocksMatchesContiguousCausalAttention) {
  CheckVarlenBatch(DType::kF32);
}

TEST(PagedAttentionTest, Bf16CacheMatchesAttentionOverBf16RoundedKeysAndValues) {
  CheckVarlenBatch(DType::kBF16);
}

TEST(PagedAttentionTest, WriteKvRoundsToBf16InABf16Cache) {
  auto attn = CreateCpuAttentionKernels();
  std::vector<uint16_t> k_cache(kNumBlocks * kBs * kRow, 0), v_cache(k_cache.size(), 0);
  const std::vector<int32_t> slots = {7};
  const auto k = RandomVector(kRow, 3), v = RandomVector(kRow, 4);
  attn->WriteKv(1, slots.data(), {k.data(), kRow}, {v.data(), kRow},
                {.k = k_cache.data(),
                 .v = v_cache.data(),
                 .dtype = DType::kBF16,
                 .block_size = kBs,
                 .num_kv_heads = kHkv,
                 .head_dim = kHd});
  for (int e = 0; e < kRow; ++e) {
    EXPECT_EQ(k_cache[7 * kRow + e], F32ToBf16(k[e]));
    EXPECT_EQ(v_cache[7 * kRow + e], F32ToBf16(v[e]));
  }
  EXPECT_EQ(k_cache[6 * kRow + kRow - 1], 0);
  EXPECT_EQ(k_cache[8 * kRow], 0);
}

TEST(PagedAttentionTest, WriteKvScattersRowsToTheirSlotsOnly) {
  auto attn = CreateCpuAttentionKernels();
  std::vector<float> k_cache(kNumBlocks * kBs * kRow, 0.0f), v_cache(k_cache.size(), 0.0f);
  const std::vector<int32_t> slots = {5, 0, 127};
  const auto k = RandomVector(3 * kRow, 1), v = RandomVector(3 * kRow, 2);
  attn->WriteKv(3, slots.data(), {k.data(), kRow}, {v.data(), kRow},
                {.k = k_cache.data(),
                 .v = v_cache.data(),
                 .block_size = kBs,
                 .num_kv_heads = kHkv,
                 .head_dim = kHd});
  for (int slot = 0; slot < kNumBlocks * kBs; ++slot) {
    const auto it = std::find(slots.begin(), slots.end(), slot);
    for (int e = 0; e < kRow; ++e) {
      const float want_k = it == slots.end() ? 0.0f : k[(it - slots.begin()) * kRow + e];
      const float want_v = it == slots.end() ? 0.0f : v[(it - slots.begin()) * kRow + e];
      ASSERT_EQ(k_cache[slot * kRow + e], want_k) << "slot " << slot;
      ASSERT_EQ(v_cache[slot * kRow + e], want_v) << "slot " << slot;
    }
  }
}

}  // namespace
}  // namespace hc::kernels
