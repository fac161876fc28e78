// Helpers shared by the cache tests: small host cache memories (whose tensors
// the helpers below read and write directly, as host memory), random
// writes into blocks and slots (what a model would do), and checksums of
// their bytes.
#ifndef HC_TESTS_UNIT_WORKER_CACHE_CACHE_TEST_UTIL_H_
#define HC_TESTS_UNIT_WORKER_CACHE_CACHE_TEST_UTIL_H_

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <span>

#include "common/token_hash.h"
#include "tests/unit/worker/runtime/host_cache_memory.h"
#include "worker/cache/conversation_cache.h"

namespace hc::cache::testing {

struct SmallMemoryOptions {
  int num_blocks = 16;
  int block_size = 4;
  int num_slots = 8;
  int num_ranks = 2;
};

inline std::unique_ptr<runtime::BackendCacheMemory> MakeSmallMemory(const SmallMemoryOptions& o) {
  const runtime::KvLayout kv{.num_layers = 2,
                             .num_blocks = o.num_blocks,
                             .block_size = o.block_size,
                             .num_kv_heads = 1,
                             .head_dim = 2};
  const runtime::MambaLayout mamba{.num_layers = 2,
                                   .num_slots = o.num_slots,
                                   .conv_dim = 3,
                                   .conv_width = 3,
                                   .num_heads = 1,
                                   .head_dim = 2,
                                   .state_size = 2};
  return runtime::testing::MakeHostCacheMemory(kv, mamba, o.num_ranks).value();
}

// Elements of one token row of K (or V) of one layer.
inline size_t RowElems(const runtime::CacheMemory& mem) {
  return static_cast<size_t>(mem.kv_layout().num_kv_heads) * mem.kv_layout().head_dim;
}

// Calls fn(float*, n) on the K and V row `row` of `block` of every layer and rank.
template <typename Fn>
void ForEachKvRow(runtime::CacheMemory& mem, int32_t block, int row, Fn fn) {
  const auto& kv = mem.kv_layout();
  const size_t n = RowElems(mem);
  const size_t offset = (static_cast<size_t>(block) * kv.block_size + row) * n;
  for (int r = 0; r < mem.num_ranks(); ++r) {
    for (int l = 0; l < kv.num_layers; ++l) {
      fn(static_cast<float*>(mem.k(r, l)) + offset, n);
      fn(static_cast<float*>(mem.v(r, l)) + offset, n);
    }
  }
}

// Calls fn(float*, n) on the conv and SSM state of `slot` of every layer and rank.
template <typename Fn>
void ForEachSlotTensor(runtime::CacheMemory& mem, int32_t slot, Fn fn) {
  const auto& m = mem.mamba_layout();
  for (int r = 0; r < mem.num_ranks(); ++r) {
    for (int l = 0; l < m.num_layers; ++l) {
      fn(mem.conv(r, l) + slot * m.ConvSlotElems(), m.ConvSlotElems());
      fn(mem.ssm(r, l) + slot * m.SsmSlotElems(), m.SsmSlotElems());
    }
  }
}

inline void FillRandom(float* p, size_t n, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (size_t i = 0; i < n; ++i) p[i] = dist(rng);
}

// Random values in rows [row_begin, row_end) of `block`.
inline void FillKvRows(runtime::CacheMemory& mem, int32_t block, int row_begin, int row_end,
                       std::mt19937_64& rng) {
  for (int row = row_begin; row < row_end; ++row) {
    ForEachKvRow(mem, block, row, [&](float* p, size_t n) { FillRandom(p, n, rng); });
  }
}

inline void FillSlot(runtime::CacheMemory& mem, int32_t slot, std::mt19937_64& rng) {
  ForEachSlotTensor(mem, slot, [&](float* p, size_t n) { FillRandom(p, n, rng); });
}

inline uint64_t MixFloats(uint64_t h, const float* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &p[i], sizeof(bits));
    h = MixHash64(h ^ bits);
  }
  return h;
}

// Checksum of token rows [0, num_tokens) of the sequence laid out by `table`:
// it depends on the bytes at each position, not on which blocks hold them.
inline uint64_t SequenceChecksum(runtime::CacheMemory& mem, std::span<const int32_t> table,
                                 int64_t num_tokens) {
  const int bs = mem.kv_layout().block_size;
  uint64_t h = MixHash64(static_cast<uint64_t>(num_tokens));
  for (int64_t pos = 0; pos < num_tokens; ++pos) {
    ForEachKvRow(mem, table[pos / bs], static_cast<int>(pos % bs),
                 [&](float* p, size_t n) { h = MixFloats(h, p, n); });
  }
  return h;
}

inline uint64_t SlotChecksum(runtime::CacheMemory& mem, int32_t slot) {
  uint64_t h = 0;
  ForEachSlotTensor(mem, slot, [&](float* p, size_t n) { h = MixFloats(h, p, n); });
  return h;
}

inline bool SlotIsZero(runtime::CacheMemory& mem, int32_t slot) {
  bool zero = true;
  ForEachSlotTensor(mem, slot, [&](float* p, size_t n) {
    for (size_t i = 0; i < n; ++i) zero = zero && p[i] == 0.0f;
  });
  return zero;
}

inline RoundStamp Stamp(uint64_t round, int64_t num_tokens, uint64_t hash) {
  return {.round = round, .num_tokens = num_tokens, .token_hash = hash};
}

}  // namespace hc::cache::testing

#endif  // HC_TESTS_UNIT_WORKER_CACHE_CACHE_TEST_UTIL_H_
