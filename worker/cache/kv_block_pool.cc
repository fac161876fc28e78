#include "worker/cache/kv_block_pool.h"

#include "common/logging.h"

namespace hc::cache {

KvBlockPool::KvBlockPool(int num_blocks)
    : refcount_(num_blocks, 0), prev_(num_blocks, kNil), next_(num_blocks, kNil) {
  HC_CHECK(num_blocks >= 0) << "negative block count " << num_blocks;
  for (BlockId b = 0; b < num_blocks; ++b) PushBack(b);
}

std::optional<BlockId> KvBlockPool::Allocate() {
  if (head_ == kNil) return std::nullopt;
  const BlockId block = head_;
  Remove(block);
  refcount_[block] = 1;
  return block;
}

void KvBlockPool::Ref(BlockId block) {
  HC_CHECK(block >= 0 && block < num_blocks()) << "block id out of range: " << block;
  HC_CHECK(refcount_[block] > 0) << "Ref on free block " << block;
  ++refcount_[block];
}

void KvBlockPool::Unref(BlockId block) {
  HC_CHECK(block >= 0 && block < num_blocks()) << "block id out of range: " << block;
  HC_CHECK(refcount_[block] > 0) << "Unref on free block " << block;
  if (--refcount_[block] == 0) PushBack(block);
}

int KvBlockPool::refcount(BlockId block) const {
  HC_CHECK(block >= 0 && block < num_blocks()) << "block id out of range: " << block;
  return refcount_[block];
}

std::vector<BlockId> KvBlockPool::FreeQueueForTest() const {
  std::vector<BlockId> out;
  out.reserve(num_free_);
  for (int32_t b = head_; b != kNil; b = next_[b]) out.push_back(b);
  return out;
}

void KvBlockPool::PushBack(BlockId block) {
  prev_[block] = tail_;
  next_[block] = kNil;
  if (tail_ == kNil) {
    head_ = block;
  } else {
    next_[tail_] = block;
  }
  tail_ = block;
  ++num_free_;
}

void KvBlockPool::Remove(BlockId block) {
  const int32_t p = prev_[block];
  const int32_t n = next_[block];
  if (p == kNil) {
    head_ = n;
  } else {
    next_[p] = n;
  }
  if (n == kNil) {
    tail_ = p;
  } else {
    prev_[n] = p;
  }
  prev_[block] = next_[block] = kNil;
  --num_free_;
}

}  // namespace hc::cache
