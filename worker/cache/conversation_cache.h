// The worker's conversation cache: the exact state of each conversation at its
// last committed round, keyed by (tenant, cache_salt, conversation_id), plus the
// requests (turns) running on top of those states. This is the API the engine
// calls for steps 3, 4 and 7 of a turn (docs/architecture.md):
//
//   Lookup(key, expected)          hit | miss | stale (a mismatch is never a hit)
//   Attach(key, expected)          on a hit: num_computed_tokens = committed length
//   AttachFresh(key)               new conversation or recompute: 0 computed tokens
//   CanAppend / Append(id, n)      reserve KV rows as tokens are scheduled
//   BlockTable(id), MambaSlot(id)  what the model reads and writes
//   Commit(id, new_round)          publish (the request becomes the committed state)
//   Discard(id)                    cancel / failure: the old committed state stays
//   CommitBase(id, new_round)      keep the state the request started from, at new_round
//   Forget(key)                    forget a conversation (on request)
//   TakeSnapshot(id, at)           keep a copy of the request's Mamba state at `at`
//   LookupSnapshot / AttachSnapshot  resume a rewrite turn from that snapshot
//
// Memory: a committed state holds ceil(len / block_size) KV blocks and one
// Mamba slot. A request attached to it shares its full blocks and owns a copy
// of the tail block and of the Mamba state, so committed state is never
// written. When an attach or append is short of blocks or slots the cache
// evicts idle committed states in the order of its EvictionPolicy (LRU by
// default); a state a running request is attached to is never evicted. If
// even evicting every idle state would not be enough, the call fails with
// RESOURCE_EXHAUSTED and changes nothing (nothing is evicted either).
//
// Snapshots: besides its committed state at length L, a conversation may hold
// one snapshot of its Mamba state at an earlier position P (the previous
// prompt's last message boundary, which the router asks for). A chat template
// that renders history differently once messages are added makes the next turn
// keep only a prefix of the committed tokens; when that prefix reaches P, the
// turn resumes from the snapshot (KV: the committed state's first P rows,
// shared like any prefix; Mamba: a copy of the snapshot slot) instead of
// recomputing from token 0. A running request takes its snapshot during
// prefill (TakeSnapshot); Commit publishes it with the new state and drops the
// conversation's previous snapshot; Discard and failures drop it. Snapshots
// are an optimisation: under slot pressure they are dropped (oldest first)
// before any committed state is evicted, and taking one never evicts a
// committed state.
//
// Salts are namespaces: keys differ when salts differ, and no block or slot is
// ever shared between two conversations.
//
// Thread-safety: NOT thread-safe. The engine thread owns the cache and calls
// every method; other threads must hand work to the engine thread instead.
#ifndef HC_WORKER_CACHE_CONVERSATION_CACHE_H_
#define HC_WORKER_CACHE_CONVERSATION_CACHE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/token_hash.h"
#include "worker/cache/eviction_policy.h"
#include "worker/cache/hybrid_coordinator.h"
#include "worker/runtime/cache_memory.h"

namespace hc::cache {

struct ConversationKey {
  std::string cache_salt;
  std::string conversation_id;
  std::string tenant;  // the router's API key tenant ("" without keys)

  friend bool operator==(const ConversationKey&, const ConversationKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const ConversationKey& k) {
    return H::combine(std::move(h), k.cache_salt, k.conversation_id, k.tenant);
  }
};

// Identifies one committed round exactly: the router's expectation and the
// worker's record must agree on all three fields for a hit.
struct RoundStamp {
  uint64_t round = 0;
  int64_t num_tokens = 0;                 // committed length
  uint64_t token_hash = kEmptyTokenHash;  // TokenHash of the committed tokens

  friend bool operator==(const RoundStamp&, const RoundStamp&) = default;
};

enum class LookupResult : uint8_t { kHit = 0, kMiss = 1, kStale = 2 };

// A conversation's Mamba state after `at.num_tokens` tokens, in `slot`.
// `at.round` is the round of the turn that took it; `at.token_hash` is the
// TokenHash of those tokens (what a resuming turn is checked against).
struct MambaSnapshot {
  RoundStamp at;
  SlotId slot = kNoSlot;
};

// Engine-side handle of a running request; never reused by one cache.
using RequestId = uint64_t;

struct AttachResult {
  RequestId request = 0;
  int64_t num_computed_tokens = 0;  // tokens whose KV and Mamba state are cached
};

// Snapshot for metrics (hc_worker_kv_blocks{state}, hc_worker_mamba_slots{state},
// hc_worker_cow_copies_total{group}, hc_worker_evictions_total{group},
// hc_worker_conversation_lookups_total{result}). Gauges are current values,
// the rest are totals since construction.
struct CacheCounters {
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_free = 0;
  int64_t kv_blocks_committed = 0;  // held by committed states (maybe shared by requests)
  int64_t kv_blocks_active = 0;     // held by running requests only
  int64_t mamba_slots_total = 0;
  int64_t mamba_slots_free = 0;
  int64_t mamba_slots_committed = 0;
  int64_t mamba_slots_active = 0;
  int64_t mamba_slots_snapshot = 0;  // held by snapshots (published or pending)
  int64_t kv_cow_copies = 0;         // tail blocks copied on attach
  int64_t mamba_cow_copies = 0;      // terminal states copied on attach
  int64_t kv_evicted_blocks = 0;     // KV blocks freed by evictions
  int64_t mamba_evicted_slots = 0;   // Mamba slots freed by evictions
  int64_t conversations_evicted = 0;
  int64_t lookups_hit = 0;
  int64_t lookups_miss = 0;
  int64_t lookups_stale = 0;
  int64_t conversations = 0;  // stored committed states
  int64_t snapshots = 0;      // committed states with a published snapshot
  int64_t snapshots_taken = 0;
  int64_t snapshots_skipped = 0;  // TakeSnapshot found no slot
  int64_t snapshots_evicted = 0;  // dropped to make room
  int64_t snapshot_hits = 0;      // LookupSnapshot found a matching snapshot
  int64_t snapshot_misses = 0;
  int64_t running_requests = 0;
};

// One stored committed state, for tests and debugging.
struct ConversationSnapshot {
  RoundStamp round;
  std::vector<BlockId> blocks;
  int tail_fill = 0;  // rows used in the last block; 0 when aligned
  SlotId mamba_slot = kNoSlot;
  uint64_t last_use = 0;  // logical clock, grows with every mutation
  bool attached = false;  // a running request is attached to it
  std::optional<MambaSnapshot> snapshot;
};

class ConversationCache {
 public:
  struct Options {
    // Device memory of both groups, sized by its layouts. Not owned; must
    // outlive the cache.
    runtime::CacheMemory* memory = nullptr;
    // Null means LRU.
    std::unique_ptr<EvictionPolicy> eviction_policy;
  };

  // INVALID_ARGUMENT when memory is null or its layouts have no blocks/slots.
  static absl::StatusOr<std::unique_ptr<ConversationCache>> Create(Options options);

  ConversationCache(const ConversationCache&) = delete;
  ConversationCache& operator=(const ConversationCache&) = delete;
  ~ConversationCache();

  // Compares the stored state of `key` with `expected`: kHit when round,
  // length and hash all match, kStale when a state exists but differs, kMiss
  // when none exists. Counted in the lookup counters; changes nothing else.
  LookupResult Lookup(const ConversationKey& key, const RoundStamp& expected);

  // Starts a request on the committed state of `key`, which must match
  // `expected`. Errors (nothing changed): NOT_FOUND (no state), FAILED_PRECONDITION
  // (stale), ABORTED (a request already runs on this key), RESOURCE_EXHAUSTED.
  absl::StatusOr<AttachResult> Attach(const ConversationKey& key, const RoundStamp& expected);

  // Starts a request for `key` from nothing (num_computed_tokens = 0): a new
  // conversation or a recompute after a miss. A stale state of `key` stays
  // until this request commits (it is replaced) and may be evicted meanwhile.
  // Errors: ABORTED (a request already runs on this key), RESOURCE_EXHAUSTED.
  absl::StatusOr<AttachResult> AttachFresh(const ConversationKey& key);

  // Whether Append(request, num_new_tokens) would succeed now, counting what
  // evicting idle states would free. False for an unknown request.
  bool CanAppend(RequestId request, int64_t num_new_tokens) const;

  // Reserves KV rows for num_new_tokens more tokens of the request, evicting
  // idle states if needed. Errors (nothing changed): NOT_FOUND (unknown
  // request), INVALID_ARGUMENT (negative), RESOURCE_EXHAUSTED.
  absl::Status Append(RequestId request, int64_t num_new_tokens);

  // Ends the request by publishing it as the committed state of its key at
  // `new_round`, replacing the previous state (no data copy). Atomic: on any
  // error the request is discarded instead and the previous state is intact.
  // REQUIRES (else INVALID_ARGUMENT): num_computed_tokens <= new_round.num_tokens
  // <= NumTokens(request), new_round.round greater than the attached round,
  // and the Mamba slot holds the state after exactly new_round.num_tokens
  // tokens. Also NOT_FOUND (unknown request), ABORTED (key forgotten meanwhile).
  absl::Status Commit(RequestId request, const RoundStamp& new_round);

  // Ends the request without publishing what it computed, and re-stamps the
  // committed state it attached to (the state the turn started from) as
  // `new_round`: same length and hash, new round. For a turn whose output is
  // cut back to before its last sampled token (a multi-token stop string),
  // where the request's Mamba state is past the cut and cannot be rolled back.
  // A fresh request (AttachFresh) started from nothing: its key is left with
  // no state (a stale one is forgotten) and the result has 0 tokens. Returns the
  // stamp now committed. Errors (the request is discarded either way, and the
  // previous state is intact): NOT_FOUND (unknown request), INVALID_ARGUMENT
  // (new_round not greater than the attached round), ABORTED (key forgotten
  // meanwhile).
  absl::StatusOr<RoundStamp> CommitBase(RequestId request, uint64_t new_round);

  // Copies the request's Mamba state into a snapshot slot, replacing the
  // request's previous one. REQUIRES: the request's slot holds the state after
  // exactly at.num_tokens tokens, whose TokenHash is at.token_hash. Commit
  // publishes it with the new state; every other end of the request drops it.
  // Needs a free slot: drops another conversation's snapshot (oldest first)
  // when none is free, never evicts a committed state. Errors (nothing
  // changed): NOT_FOUND (unknown request), INVALID_ARGUMENT (at.num_tokens
  // outside [num_computed_tokens, NumTokens]), RESOURCE_EXHAUSTED (counted in
  // snapshots_skipped).
  absl::Status TakeSnapshot(RequestId request, const RoundStamp& at);

  // The snapshot of `key` a turn with this history can resume from: one whose
  // position P <= history.size() and whose hash equals TokenHash(history[0,
  // P)). Counted in snapshot_hits / snapshot_misses; changes nothing else.
  std::optional<RoundStamp> LookupSnapshot(const ConversationKey& key,
                                           std::span<const int32_t> history);

  // Starts a request from the snapshot of `key` stamped `at`
  // (num_computed_tokens = at.num_tokens): the committed state's first
  // at.num_tokens KV rows and a copy of the snapshot slot. Commit replaces the
  // committed state like any attached request's; CommitBase leaves the key
  // empty (a snapshot is not a committed round). Errors (nothing changed):
  // NOT_FOUND (no such snapshot, e.g. dropped), ABORTED (a request already
  // runs on this key), RESOURCE_EXHAUSTED.
  absl::StatusOr<AttachResult> AttachSnapshot(const ConversationKey& key, const RoundStamp& at);

  // Ends the request and frees what it owned; the committed state it attached
  // to (if any) is unchanged and becomes evictable again. NOT_FOUND if unknown.
  absl::Status Discard(RequestId request);

  // Forgets the committed state of `key` and frees its memory. A request
  // running on `key` keeps running on its own copies, but its Commit fails
  // with ABORTED. Returns whether there was a state or a request to forget.
  bool Forget(const ConversationKey& key);

  // The request's block table: block i holds token rows [i*bs, (i+1)*bs).
  // Valid until the next non-const call. REQUIRES: a running request.
  std::span<const int32_t> BlockTable(RequestId request) const;
  // The Mamba slot the request owns. REQUIRES: a running request.
  SlotId MambaSlot(RequestId request) const;
  // Token rows reserved: num_computed_tokens at attach plus all appends.
  int64_t NumTokens(RequestId request) const;
  int64_t NumComputedTokens(RequestId request) const;

  int block_size() const { return coordinator_.kv().block_size(); }
  CacheCounters Counters() const;
  std::optional<ConversationSnapshot> Inspect(const ConversationKey& key) const;
  const HybridCoordinator& coordinator() const { return coordinator_; }

 private:
  // A stored committed state.
  struct Entry {
    ConversationKey key;
    RoundStamp round;
    HybridCommitted state;
    uint64_t last_use = 0;
    std::optional<RequestId> attached;  // pinned while a request runs on it
    std::optional<MambaSnapshot> snapshot;
  };
  // A running request.
  struct Request {
    ConversationKey key;
    std::optional<EntryId> entry;  // the committed state it attached to, if any
    uint64_t attached_round = 0;
    int64_t num_computed_tokens = 0;
    HybridRequest state;
    bool forgotten = false;      // Forget(key) ran meanwhile: Commit must not publish
    bool from_snapshot = false;  // attached to entry's snapshot
    std::optional<MambaSnapshot> pending_snapshot;  // TakeSnapshot's, until Commit
  };

  explicit ConversationCache(Options options);

  // Whether `need` would fit after dropping every snapshot and evicting every
  // idle state except `keep` (and keep's snapshot when keep_snapshot).
  bool CouldFit(const ResourceNeed& need, std::optional<EntryId> keep,
                bool keep_snapshot = false) const;
  // Drops snapshots (when slots are short) and then evicts idle states in
  // policy order until `need` fits; never drops the snapshot of `keep_snapshot`.
  // REQUIRES: CouldFit(need, nullopt) counting that snapshot as kept.
  void MakeRoom(const ResourceNeed& need, std::optional<EntryId> keep_snapshot = std::nullopt);
  // Drops the snapshot of the least recently used entry other than `except`;
  // false when there is none.
  bool DropOldestSnapshot(std::optional<EntryId> except);
  void FreeEntrySnapshot(Entry& entry);
  void MakeEvictable(EntryId id, const Entry& entry);
  void MakeUnevictable(EntryId id, const Entry& entry);
  void Evict(EntryId id);
  // Frees an entry's committed state and removes it (whether idle or pinned):
  // the common part of Forget and Evict.
  void FreeEntry(EntryId id);
  void DiscardImpl(Request request);
  absl::StatusOr<AttachResult> AttachImpl(const ConversationKey& key,
                                          std::optional<EntryId> entry_id,
                                          bool from_snapshot = false);
  const Request& GetRequest(RequestId request) const;

  std::unique_ptr<EvictionPolicy> policy_;
  HybridCoordinator coordinator_;

  absl::flat_hash_map<ConversationKey, EntryId> index_;
  absl::flat_hash_map<EntryId, Entry> entries_;
  absl::flat_hash_map<RequestId, Request> requests_;
  absl::flat_hash_map<ConversationKey, RequestId> running_by_key_;

  EntryId next_entry_id_ = 1;
  RequestId next_request_id_ = 1;
  uint64_t clock_ = 0;
  int64_t evictable_blocks_ = 0;  // blocks held by idle states
  int64_t evictable_slots_ = 0;   // slots held by idle states
  int64_t entry_snapshots_ = 0;   // published snapshots (all droppable)
  CacheCounters totals_;          // the cumulative fields only
};

}  // namespace hc::cache

#endif  // HC_WORKER_CACHE_CONVERSATION_CACHE_H_
