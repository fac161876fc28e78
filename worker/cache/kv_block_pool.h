// A fixed pool of KV cache blocks with reference counts.
//
// Each block holds `block_size` token rows of K and V for every attention
// layer on every tensor-parallel rank (see runtime/cache_memory.h); the pool
// only does the bookkeeping. A block is free when its reference count is zero.
// Free blocks sit in a queue in LRU order: a block freed last is handed out
// last. Nothing reads a freed block's content today (there is no prefix
// cache); the order only makes allocation deterministic, which the tests rely
// on. Allocate, Ref and Unref are O(1).
//
// Thread-safety: not thread-safe; the engine thread owns it.
#ifndef HC_WORKER_CACHE_KV_BLOCK_POOL_H_
#define HC_WORKER_CACHE_KV_BLOCK_POOL_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "worker/runtime/cache_memory.h"

namespace hc::cache {

using runtime::BlockId;

class KvBlockPool {
 public:
  // All `num_blocks` blocks start free, queued in id order.
  explicit KvBlockPool(int num_blocks);

  KvBlockPool(const KvBlockPool&) = delete;
  KvBlockPool& operator=(const KvBlockPool&) = delete;

  int num_blocks() const { return static_cast<int>(refcount_.size()); }
  int num_free() const { return num_free_; }
  int num_used() const { return num_blocks() - num_free_; }

  // Takes the least recently freed block and sets its refcount to 1. Returns
  // nullopt when no block is free.
  std::optional<BlockId> Allocate();

  // Adds a reference to a block in use. REQUIRES: refcount(block) > 0.
  void Ref(BlockId block);

  // Drops a reference; at zero the block joins the back of the free queue.
  // REQUIRES: refcount(block) > 0.
  void Unref(BlockId block);

  int refcount(BlockId block) const;

  // Free block ids from the front (next to be allocated) to the back.
  std::vector<BlockId> FreeQueueForTest() const;

 private:
  static constexpr int32_t kNil = -1;

  void PushBack(BlockId block);
  void Remove(BlockId block);

  std::vector<int32_t> refcount_;
  // Intrusive doubly-linked free queue over block ids; valid only for free blocks.
  std::vector<int32_t> prev_;
  std::vector<int32_t> next_;
  int32_t head_ = kNil;
  int32_t tail_ = kNil;
  int num_free_ = 0;
};

}  // namespace hc::cache

#endif  // HC_WORKER_CACHE_KV_BLOCK_POOL_H_
