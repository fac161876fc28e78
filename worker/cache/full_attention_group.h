// The full-attention cache group: paged KV blocks per request and per
// committed conversation state, over a KvBlockPool.
//
// Ownership is expressed with reference counts: every block in a committed
// state's list and every block in a request's table carries one reference from
// that holder. A request attached to a committed state of L tokens references
// the L / block_size full blocks of that state (read-only: their tokens are
// already computed) and owns a private copy of the unaligned tail block (the
// tail copy-on-write) plus every block it grows into. Only owned blocks
// (refcount 1, held by the request alone) are ever written by the model.
//
// Operations come in two phases so a composite can combine groups: Blocks*()
// says how many free blocks an operation needs (no side effects); the
// operation itself REQUIRES that many free blocks and then cannot fail for
// lack of memory.
//
// Thread-safety: not thread-safe; the engine thread owns it.
#ifndef HC_WORKER_CACHE_FULL_ATTENTION_GROUP_H_
#define HC_WORKER_CACHE_FULL_ATTENTION_GROUP_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/cache/kv_block_pool.h"
#include "worker/runtime/cache_memory.h"

namespace hc::cache {

// The blocks of one committed conversation state: blocks.size() ==
// ceil(num_tokens / block_size); the last block is filled to
// num_tokens % block_size rows when that is non-zero (the tail fill).
struct KvCommittedBlocks {
  std::vector<BlockId> blocks;
  int64_t num_tokens = 0;
};

// The block table of one running request: blocks.size() ==
// ceil(num_tokens / block_size). blocks[0, num_shared) are shared with the
// committed state it attached to; the rest are owned by the request.
struct KvRequestBlocks {
  std::vector<BlockId> blocks;
  int64_t num_tokens = 0;  // token rows reserved (computed or scheduled)
  int num_shared = 0;
};

class FullAttentionGroup {
 public:
  // `pool` and `memory` must outlive the group; block_size > 0.
  FullAttentionGroup(KvBlockPool* pool, runtime::CacheMemory* memory, int block_size);

  FullAttentionGroup(const FullAttentionGroup&) = delete;
  FullAttentionGroup& operator=(const FullAttentionGroup&) = delete;

  int block_size() const { return block_size_; }
  int64_t BlocksFor(int64_t num_tokens) const {
    return (num_tokens + block_size_ - 1) / block_size_;
  }

  // Free blocks Attach(committed) needs: 1 when the committed state has an
  // unaligned tail, else 0. `committed` may be null (a fresh request).
  int BlocksForAttach(const KvCommittedBlocks* committed) const;
  // Free blocks Append(req, num_new_tokens) needs.
  int64_t BlocksForAppend(const KvRequestBlocks& req, int64_t num_new_tokens) const;

  // Starts a request at the end of `committed` (or empty when null): refs the
  // full blocks and copies the tail block's filled rows into a new block.
  // REQUIRES: BlocksForAttach(committed) free blocks. Fails only if the memory
  // copy fails, and then changes nothing.
  absl::StatusOr<KvRequestBlocks> Attach(const KvCommittedBlocks* committed);

  // Grows the table to cover num_new_tokens more rows.
  // REQUIRES: BlocksForAppend(*req, num_new_tokens) free blocks, num_new_tokens >= 0.
  void Append(KvRequestBlocks* req, int64_t num_new_tokens);

  // Turns the request's first committed_len rows into the new committed state
  // and frees `old` (the state it replaces; empty for none) and the
  // request's blocks past committed_len. No data moves.
  // REQUIRES: req.num_shared * block_size <= committed_len <= req.num_tokens.
  KvCommittedBlocks Publish(KvRequestBlocks req, KvCommittedBlocks old, int64_t committed_len);

  // Releases every block reference the request holds.
  void Discard(KvRequestBlocks req);

  // Frees a committed state (after Forget or Evict).
  void FreeCommitted(KvCommittedBlocks committed);

  // Blocks referenced by committed states (committed states never share blocks).
  int num_committed_blocks() const { return num_committed_blocks_; }
  int64_t cow_copies() const { return cow_copies_; }
  const KvBlockPool& pool() const { return *pool_; }

 private:
  KvBlockPool* pool_;
  runtime::CacheMemory* memory_;
  int block_size_;
  int num_committed_blocks_ = 0;
  int64_t cow_copies_ = 0;
};

}  // namespace hc::cache

#endif  // HC_WORKER_CACHE_FULL_ATTENTION_GROUP_H_
