// The blocked (flash-style) CPU attention at its block edges, for every
// instruction set this CPU runs: sequence lengths and positions around the
// 64-key blocks and the per-task query blocks, GQA ratios 1/2/4/8, several
// sequences with different cached lengths in one batch, fp32 and bf16 KV;
// results bitwise identical inline and on intra-op pools of 1..4 threads, and
// a decode row bitwise equal to the same row inside a prefill.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/intra_op.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels_simd.h"
#include "kernels/half.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace hc::kernels {
namespace {

using simd::SimdWidth;
using testing::MaxRelError;
using testing::RandomVector;

constexpr int kBs = 16;

// A batch of sequences (cached tokens, new tokens) over a paged cache whose
// unused slots hold NaN, with the new tokens' KV already written.
struct Problem {
  int hq, hkv, hd;
  DType dtype;
  std::vector<std::pair<int, int>> seqs;
  std::vector<int32_t> tables, qsl = {0}, computed;
  int max_blocks = 0;
  std::vector<float> k_f32, v_f32;  // cache (fp32 dtype)
  std::vector<uint16_t> k_bf16, v_bf16;
  std::vector<std::vector<float>> full_k, full_v;  // per sequence, as stored
  std::vector<float> q;

  Problem(int hq_, int hkv_, int hd_, DType dt, std::vector<std::pair<int, int>> s)
      : hq(hq_), hkv(hkv_), hd(hd_), dtype(dt), seqs(std::move(s)) {
    const int row = hkv * hd;
    int blocks = 0;
    for (auto [done, len] : seqs) max_blocks = std::max(max_blocks, (done + len + kBs - 1) / kBs);
    for (auto [done, len] : seqs) blocks += (done + len + kBs - 1) / kBs;
    blocks += 1;
    std::vector<int32_t> ids(blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), std::mt19937(3));
    tables.assign(seqs.size() * max_blocks, -1);
    const size_t cache_elems = static_cast<size_t>(blocks) * kBs * row;
    if (dtype == DType::kF32) {
      k_f32.assign(cache_elems, NAN);
      v_f32.assign(cache_elems, NAN);
    } else {
      k_bf16.assign(cache_elems, F32ToBf16(NAN));
      v_bf16.assign(cache_elems, F32ToBf16(NAN));
    }
    int next = 0;
    for (size_t s = 0; s < seqs.size(); ++s) {
      const auto [done, len] = seqs[s];
      const int ctx = done + len;
      for (int b = 0; b * kBs < ctx; ++b) tables[s * max_blocks + b] = ids[next++];
      full_k.push_back(RandomVector(static_cast<size_t>(ctx) * row, 10 + s));
      full_v.push_back(RandomVector(static_cast<size_t>(ctx) * row, 50 + s));
      for (int pos = 0; pos < ctx; ++pos) {
        const int64_t slot =
            static_cast<int64_t>(tables[s * max_blocks + pos / kBs]) * kBs + pos % kBs;
        for (int e = 0; e < row; ++e) {
          float& kx = full_k[s][pos * row + e];
          float& vx = full_v[s][pos * row + e];
          if (dtype == DType::kF32) {
            k_f32[slot * row + e] = kx;
            v_f32[slot * row + e] = vx;
          } else {
            k_bf16[slot * row + e] = F32ToBf16(kx);
            v_bf16[slot * row + e] = F32ToBf16(vx);
            kx = Bf16ToF32(F32ToBf16(kx));
            vx = Bf16ToF32(F32ToBf16(vx));
          }
        }
      }
      qsl.push_back(qsl.back() + len);
      computed.push_back(done);
    }
    q = RandomVector(static_cast<size_t>(qsl.back()) * hq * hd, 99, -2.0f, 2.0f);
  }

  PagedKvCache Cache() {
    return {.k = dtype == DType::kF32 ? static_cast<void*>(k_f32.data()) : k_bf16.data(),
            .v = dtype == DType::kF32 ? static_cast<void*>(v_f32.data()) : v_bf16.data(),
            .dtype = dtype,
            .block_size = kBs,
            .num_kv_heads = hkv,
            .head_dim = hd};
  }

  std::vector<float> Run(const AttentionKernels& attn) {
    std::vector<float> out(q.size(), NAN);
    attn.PagedAttention({.num_q_heads = hq,
                         .scale = 1.0f / std::sqrt(static_cast<float>(hd)),
                         .q = {q.data(), hq * hd},
                         .out = {out.data(), hq * hd}},
                        {.seqs = {static_cast<int>(seqs.size()), qsl.data()},
                         .num_computed_tokens = computed.data(),
                         .block_tables = tables.data(),
                         .max_blocks_per_seq = max_blocks},
                        Cache());
    return out;
  }

  // Causal attention in double over the stored keys and values.
  std::vector<float> Reference() const {
    std::vector<float> out(q.size());
    const int row = hkv * hd;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    for (size_t s = 0; s < seqs.size(); ++s) {
      const auto [done, len] = seqs[s];
      for (int i = 0; i < len; ++i) {
        const int pos = done + i;
        const int t = qsl[s] + i;
        for (int h = 0; h < hq; ++h) {
          const int kvh = h / (hq / hkv);
          const float* qv = q.data() + (static_cast<size_t>(t) * hq + h) * hd;
          std::vector<double> w(pos + 1);
          double mx = -1e300, sum = 0.0;
          for (int j = 0; j <= pos; ++j) {
            double dot = 0.0;
            for (int d = 0; d < hd; ++d) dot += double(qv[d]) * full_k[s][j * row + kvh * hd + d];
            w[j] = dot * scale;
            mx = std::max(mx, w[j]);
          }
          for (double& x : w) sum += (x = std::exp(x - mx));
          for (int d = 0; d < hd; ++d) {
            double acc = 0.0;
            for (int j = 0; j <= pos; ++j) acc += w[j] * full_v[s][j * row + kvh * hd + d];
            out[(static_cast<size_t>(t) * hq + h) * hd + d] = static_cast<float>(acc / sum);
          }
        }
      }
    }
    return out;
  }
};

const SimdWidth kWidths[] = {SimdWidth::kPortable, SimdWidth::kAvx2, SimdWidth::kAvx512};

std::string Name(SimdWidth w) { return "lanes=" + std::to_string(simd::SimdLanes(w)); }

// Around the 64-key blocks (63/64/65, 127/128/129 positions, a diagonal that
// straddles a block edge) and the query blocks (96 / group queries per task).
const std::vector<std::pair<int, int>> kEdgeSeqs = {{0, 63},  {0, 65},  {60, 9}, {0, 1},
                                                    {127, 1}, {128, 1}, {3, 0},  {5, 97},
                                                    {64, 64}, {0, 13},  {40, 25}};

TEST(BlockedAttentionTest, BlockEdgesMatchReferenceForEveryGqaRatioDtypeAndIsa) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (int group : {1, 2, 4, 8}) {
      for (int hd : {16, 24}) {  // 24: a column tail for every vector width
        Problem pr(2 * group, 2, hd, dtype, kEdgeSeqs);
        const auto want = pr.Reference();
        for (SimdWidth w : kWidths) {
          const auto got = pr.Run(*CreateCpuAttentionKernels(w));
          EXPECT_LT(MaxRelError(got, want), 2e-5) << Name(w) << " group=" << group << " hd=" << hd
                                                  << " bf16=" << (dtype == DType::kBF16);
        }
      }
    }
  }
}

TEST(BlockedAttentionTest, ResultIsBitwiseIdenticalInlineAndOnPoolsOfOneToFourThreads) {
  Problem pr(12, 4, 64, DType::kF32, {{0, 200}, {37, 150}, {300, 1}, {10, 70}});
  for (SimdWidth w : kWidths) {
    auto attn = CreateCpuAttentionKernels(w);
    const auto inline_out = pr.Run(*attn);
    for (int threads = 1; threads <= 4; ++threads) {
      IntraOpPool pool(threads);
      ScopedIntraOpPool bind(&pool);
      const auto pooled = pr.Run(*attn);
      EXPECT_EQ(std::memcmp(pooled.data(), inline_out.data(), sizeof(float) * pooled.size()), 0)
          << Name(w) << " threads=" << threads;
    }
  }
}

TEST(BlockedAttentionTest, DecodeRowIsBitwiseTheSameRowOfAPrefill) {
  // The prefill's query 140 (inside a query block and a key block) and the
  // same query decoded alone over the same cache. The prefill's key blocks are
  // packed once per call, the decode's gathered by its task (each with its own
  // widening of bf16 entries): both must hand the same fp32 values on.
  const int ctx = 141;
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    Problem prefill(6, 2, 32, dtype, {{0, ctx}});
    Problem decode(6, 2, 32, dtype, {{ctx - 1, 1}});
    const size_t row = 6 * 32;
    std::copy(prefill.q.end() - row, prefill.q.end(), decode.q.begin());
    for (SimdWidth w : kWidths) {
      auto attn = CreateCpuAttentionKernels(w);
      const auto full = prefill.Run(*attn);
      const auto one = decode.Run(*attn);
      EXPECT_EQ(std::memcmp(one.data(), full.data() + (ctx - 1) * row, sizeof(float) * row), 0)
          << Name(w) << " bf16=" << (dtype == DType::kBF16);
    }
  }
}

}  // namespace
}  // namespace hc::kernels
