#include "worker/cache/full_attention_group.h"

#include <utility>

#include "common/logging.h"

namespace hc::cache {

FullAttentionGroup::FullAttentionGroup(KvBlockPool* pool, runtime::CacheMemory* memory,
                                       int block_size)
    : pool_(pool), memory_(memory), block_size_(block_size) {
  HC_CHECK(pool != nullptr && memory != nullptr) << "FullAttentionGroup needs a pool and memory";
  HC_CHECK(block_size > 0) << "block_size must be positive, got " << block_size;
}

int FullAttentionGroup::BlocksForAttach(const KvCommittedBlocks* committed) const {
  return committed != nullptr && committed->num_tokens % block_size_ != 0 ? 1 : 0;
}

int64_t FullAttentionGroup::BlocksForAppend(const KvRequestBlocks& req,
                                            int64_t num_new_tokens) const {
  const int64_t have = static_cast<int64_t>(req.blocks.size());
  const int64_t want = BlocksFor(req.num_tokens + num_new_tokens);
  return want > have ? want - have : 0;
}

absl::StatusOr<KvRequestBlocks> FullAttentionGroup::Attach(const KvCommittedBlocks* committed) {
  KvRequestBlocks req;
  if (committed == nullptr) return req;
  HC_CHECK(static_cast<int64_t>(committed->blocks.size()) == BlocksFor(committed->num_tokens))
      << "committed state has " << committed->blocks.size() << " blocks for "
      << committed->num_tokens << " tokens";
  const int64_t num_full = committed->num_tokens / block_size_;
  const int tail = static_cast<int>(committed->num_tokens % block_size_);
  req.blocks.reserve(committed->blocks.size());
  if (tail != 0) {
    const std::optional<BlockId> copy = pool_->Allocate();
    HC_CHECK(copy.has_value()) << "Attach called without a free block for the tail copy";
    const absl::Status s = memory_->CopyKvBlock(committed->blocks[num_full], *copy, tail);
    if (!s.ok()) {
      pool_->Unref(*copy);
      return s;
    }
    ++cow_copies_;
    req.blocks.assign(committed->blocks.begin(), committed->blocks.begin() + num_full);
    req.blocks.push_back(*copy);
  } else {
    req.blocks = committed->blocks;
  }
  for (int64_t i = 0; i < num_full; ++i) pool_->Ref(req.blocks[i]);
  req.num_tokens = committed->num_tokens;
  req.num_shared = static_cast<int>(num_full);
  return req;
}

void FullAttentionGroup::Append(KvRequestBlocks* req, int64_t num_new_tokens) {
  HC_CHECK(num_new_tokens >= 0) << "negative append " << num_new_tokens;
  const int64_t want = BlocksFor(req->num_tokens + num_new_tokens);
  HC_CHECK(want - static_cast<int64_t>(req->blocks.size()) <= pool_->num_free())
      << "Append called without enough free blocks";
  while (static_cast<int64_t>(req->blocks.size()) < want) req->blocks.push_back(*pool_->Allocate());
  req->num_tokens += num_new_tokens;
}

KvCommittedBlocks FullAttentionGroup::Publish(KvRequestBlocks req, KvCommittedBlocks old,
                                              int64_t committed_len) {
  HC_CHECK(committed_len >= static_cast<int64_t>(req.num_shared) * block_size_ &&
           committed_len <= req.num_tokens)
      << "publish of " << committed_len << " tokens from a request with " << req.num_tokens
      << " tokens and " << req.num_shared << " shared blocks";
  const int64_t keep = BlocksFor(committed_len);
  for (int64_t i = keep; i < static_cast<int64_t>(req.blocks.size()); ++i) {
    pool_->Unref(req.blocks[i]);
  }
  req.blocks.resize(keep);
  KvCommittedBlocks published{std::move(req.blocks), committed_len};
  num_committed_blocks_ += static_cast<int>(published.blocks.size());
  FreeCommitted(std::move(old));
  return published;
}

void FullAttentionGroup::Discard(KvRequestBlocks req) {
  for (const BlockId b : req.blocks) pool_->Unref(b);
}

void FullAttentionGroup::FreeCommitted(KvCommittedBlocks committed) {
  for (const BlockId b : committed.blocks) pool_->Unref(b);
  num_committed_blocks_ -= static_cast<int>(committed.blocks.size());
  HC_CHECK(num_committed_blocks_ >= 0) << "committed block count went negative";
}

}  // namespace hc::cache
