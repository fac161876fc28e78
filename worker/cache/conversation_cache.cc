#include "worker/cache/conversation_cache.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace hc::cache {

absl::StatusOr<std::unique_ptr<ConversationCache>> ConversationCache::Create(Options options) {
  if (options.memory == nullptr)
    return absl::InvalidArgumentError("ConversationCache needs memory");
  const runtime::KvLayout& kv = options.memory->kv_layout();
  if (kv.num_blocks <= 0 || kv.block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV layout needs blocks: num_blocks=", kv.num_blocks, " block_size=", kv.block_size));
  }
  if (options.memory->mamba_layout().num_slots <= 0) {
    return absl::InvalidArgumentError("Mamba layout needs at least one slot");
  }
  if (options.eviction_policy == nullptr) options.eviction_policy = NewLruEvictionPolicy();
  return std::unique_ptr<ConversationCache>(new ConversationCache(std::move(options)));
}

ConversationCache::ConversationCache(Options options)
    : policy_(std::move(options.eviction_policy)), coordinator_(options.memory) {}

ConversationCache::~ConversationCache() = default;

LookupResult ConversationCache::Lookup(const ConversationKey& key, const RoundStamp& expected) {
  const auto it = index_.find(key);
  if (it == index_.end()) {
    ++totals_.lookups_miss;
    return LookupResult::kMiss;
  }
  if (entries_.at(it->second).round == expected) {
    ++totals_.lookups_hit;
    return LookupResult::kHit;
  }
  ++totals_.lookups_stale;
  return LookupResult::kStale;
}

absl::StatusOr<AttachResult> ConversationCache::Attach(const ConversationKey& key,
                                                       const RoundStamp& expected) {
  if (running_by_key_.contains(key)) {
    return absl::AbortedError("a turn is already running on this conversation");
  }
  const auto it = index_.find(key);
  if (it == index_.end()) return absl::NotFoundError("no committed state for this conversation");
  const Entry& entry = entries_.at(it->second);
  if (entry.round != expected) {
    return absl::FailedPreconditionError(
        absl::StrCat("committed state is round ", entry.round.round, " with ",
                     entry.round.num_tokens, " tokens; expected round ", expected.round, " with ",
                     expected.num_tokens, " tokens (or a different hash)"));
  }
  return AttachImpl(key, it->second);
}

absl::StatusOr<AttachResult> ConversationCache::AttachFresh(const ConversationKey& key) {
  if (running_by_key_.contains(key)) {
    return absl::AbortedError("a turn is already running on this conversation");
  }
  return AttachImpl(key, std::nullopt);
}

absl::StatusOr<AttachResult> ConversationCache::AttachSnapshot(const ConversationKey& key,
                                                               const RoundStamp& at) {
  if (running_by_key_.contains(key)) {
    return absl::AbortedError("a turn is already running on this conversation");
  }
  const auto it = index_.find(key);
  if (it == index_.end() || !entries_.at(it->second).snapshot.has_value() ||
      entries_.at(it->second).snapshot->at != at) {
    return absl::NotFoundError(
        absl::StrCat("no snapshot at ", at.num_tokens, " tokens for this conversation (dropped?)"));
  }
  return AttachImpl(key, it->second, /*from_snapshot=*/true);
}

absl::StatusOr<AttachResult> ConversationCache::AttachImpl(const ConversationKey& key,
                                                           std::optional<EntryId> entry_id,
                                                           bool from_snapshot) {
  // What the request starts from: the committed state, or the first P rows
  // of its blocks with the snapshot slot.
  const auto source = [&]() -> std::optional<HybridCommitted> {
    if (!entry_id.has_value()) return std::nullopt;
    const Entry& e = entries_.at(*entry_id);
    if (!from_snapshot) return e.state;
    HybridCommitted prefix;
    prefix.kv.num_tokens = e.snapshot->at.num_tokens;
    prefix.kv.blocks.assign(
        e.state.kv.blocks.begin(),
        e.state.kv.blocks.begin() + coordinator_.kv().BlocksFor(prefix.kv.num_tokens));
    prefix.slot = e.snapshot->slot;
    return prefix;
  };
  std::optional<HybridCommitted> committed = source();
  const ResourceNeed need = coordinator_.NeedForAttach(committed ? &*committed : nullptr);
  if (!CouldFit(need, entry_id, from_snapshot)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("attach needs ", need.blocks, " KV blocks and ", need.slots,
                     " Mamba slots; not available even after evicting every idle conversation"));
  }
  // Pin first so eviction cannot pick the state being attached to.
  if (entry_id.has_value()) MakeUnevictable(*entry_id, entries_.at(*entry_id));
  MakeRoom(need, from_snapshot ? entry_id : std::nullopt);
  Entry* entry = entry_id.has_value() ? &entries_.at(*entry_id) : nullptr;
  absl::StatusOr<HybridRequest> state =
      coordinator_.Attach(committed.has_value() ? &*committed : nullptr);
  if (!state.ok()) {
    if (entry != nullptr) MakeEvictable(*entry_id, *entry);
    return state.status();
  }
  const RequestId id = next_request_id_++;
  Request request;
  request.key = key;
  request.entry = entry_id;
  if (entry != nullptr) {
    entry->attached = id;
    entry->last_use = ++clock_;
    request.attached_round = entry->round.round;
    request.num_computed_tokens =
        from_snapshot ? committed->kv.num_tokens : entry->round.num_tokens;
    request.from_snapshot = from_snapshot;
  }
  request.state = *std::move(state);
  requests_.emplace(id, std::move(request));
  running_by_key_.emplace(key, id);
  return AttachResult{.request = id, .num_computed_tokens = requests_.at(id).num_computed_tokens};
}

bool ConversationCache::CanAppend(RequestId request, int64_t num_new_tokens) const {
  const auto it = requests_.find(request);
  if (it == requests_.end() || num_new_tokens < 0) return false;
  return CouldFit(coordinator_.NeedForAppend(it->second.state, num_new_tokens), std::nullopt);
}

absl::Status ConversationCache::Append(RequestId request, int64_t num_new_tokens) {
  const auto it = requests_.find(request);
  if (it == requests_.end()) return absl::NotFoundError(absl::StrCat("no request ", request));
  if (num_new_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot append ", num_new_tokens, " tokens"));
  }
  const ResourceNeed need = coordinator_.NeedForAppend(it->second.state, num_new_tokens);
  if (!CouldFit(need, std::nullopt)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("append of ", num_new_tokens, " tokens needs ", need.blocks,
                     " KV blocks; not available even after evicting every idle conversation"));
  }
  MakeRoom(need);
  return coordinator_.Append(&requests_.at(request).state, num_new_tokens);
}

absl::Status ConversationCache::Commit(RequestId request, const RoundStamp& new_round) {
  const auto it = requests_.find(request);
  if (it == requests_.end()) return absl::NotFoundError(absl::StrCat("no request ", request));
  Request r = std::move(it->second);
  requests_.erase(it);
  running_by_key_.erase(r.key);
  absl::Status error;
  if (r.forgotten) {
    error = absl::AbortedError("the conversation was forgotten while the turn ran");
  } else if (new_round.num_tokens < r.num_computed_tokens ||
             new_round.num_tokens > r.state.kv.num_tokens) {
    error = absl::InvalidArgumentError(absl::StrCat("commit of ", new_round.num_tokens,
                                                    " tokens outside [", r.num_computed_tokens,
                                                    ", ", r.state.kv.num_tokens, "]"));
  } else if (r.entry.has_value() && new_round.round <= r.attached_round) {
    error = absl::InvalidArgumentError(
        absl::StrCat("commit of round ", new_round.round, " over round ", r.attached_round));
  }
  if (!error.ok()) {
    DiscardImpl(std::move(r));
    return error;
  }

  // The state this commit replaces: the one attached to, or a stale one of a
  // fresh request (idle, since one request per key runs at a time).
  std::optional<EntryId> id = r.entry;
  if (!id.has_value()) {
    if (const auto idx = index_.find(r.key); idx != index_.end()) {
      id = idx->second;
      MakeUnevictable(*id, entries_.at(*id));
    }
  }
  if (!id.has_value()) {
    id = next_entry_id_++;
    Entry fresh;
    fresh.key = r.key;
    entries_.emplace(*id, std::move(fresh));
    index_.emplace(r.key, *id);
  }
  Entry& entry = entries_.at(*id);
  HybridCommitted old = std::move(entry.state);
  entry.state = coordinator_.Publish(std::move(r.state), std::move(old), new_round.num_tokens);
  entry.round = new_round;
  // The conversation moved on: its previous snapshot is dropped, and the
  // turn's own (a prefix of the new state's tokens) takes its place.
  FreeEntrySnapshot(entry);
  if (r.pending_snapshot.has_value()) {
    if (r.pending_snapshot->at.num_tokens <= new_round.num_tokens) {
      entry.snapshot = r.pending_snapshot;
      ++entry_snapshots_;
    } else {
      coordinator_.FreeSnapshot(r.pending_snapshot->slot);
    }
  }
  entry.attached.reset();
  entry.last_use = ++clock_;
  MakeEvictable(*id, entry);
  return absl::OkStatus();
}

absl::StatusOr<RoundStamp> ConversationCache::CommitBase(RequestId request, uint64_t new_round) {
  const auto it = requests_.find(request);
  if (it == requests_.end()) return absl::NotFoundError(absl::StrCat("no request ", request));
  Request r = std::move(it->second);
  requests_.erase(it);
  running_by_key_.erase(r.key);
  // A request resumed from a snapshot started from no committed round: like
  // a fresh one, it leaves nothing (the committed state it pinned describes
  // tokens the router has replaced).
  const std::optional<EntryId> base = r.entry;
  const bool from_snapshot = r.from_snapshot;
  const bool forgotten = r.forgotten;
  const uint64_t attached_round = r.attached_round;
  const ConversationKey key = r.key;
  DiscardImpl(std::move(r));  // the base (if any) stays, evictable again
  if (forgotten) return absl::AbortedError("the conversation was forgotten while the turn ran");
  if (base.has_value() && !from_snapshot && new_round <= attached_round) {
    return absl::InvalidArgumentError(
        absl::StrCat("commit of round ", new_round, " over round ", attached_round));
  }
  if (!base.has_value() || from_snapshot) {
    // Started from nothing (or a snapshot): nothing computed is kept, and a stale state of
    // the key describes an older round, so the key is left empty.
    if (const auto idx = index_.find(key); idx != index_.end()) FreeEntry(idx->second);
    return RoundStamp{.round = new_round, .num_tokens = 0, .token_hash = kEmptyTokenHash};
  }
  Entry& entry = entries_.at(*base);
  entry.round.round = new_round;
  FreeEntrySnapshot(entry);  // a snapshot belongs to the round that took it
  entry.last_use = ++clock_;
  return entry.round;
}

absl::Status ConversationCache::TakeSnapshot(RequestId request, const RoundStamp& at) {
  const auto it = requests_.find(request);
  if (it == requests_.end()) return absl::NotFoundError(absl::StrCat("no request ", request));
  Request& r = it->second;
  if (at.num_tokens < r.num_computed_tokens || at.num_tokens > r.state.kv.num_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot at ", at.num_tokens,
                                                   " tokens outside [", r.num_computed_tokens, ", ",
                                                   r.state.kv.num_tokens, "]"));
  }
  if (r.pending_snapshot.has_value()) {
    coordinator_.FreeSnapshot(r.pending_snapshot->slot);
    r.pending_snapshot.reset();
  }
  // Only another snapshot may make way: a committed state is worth more.
  if (coordinator_.mamba().num_free() < 1) DropOldestSnapshot(std::nullopt);
  absl::StatusOr<SlotId> slot = coordinator_.TakeSnapshot(r.state);
  if (!slot.ok()) {
    ++totals_.snapshots_skipped;
    return slot.status();
  }
  r.pending_snapshot = MambaSnapshot{.at = at, .slot = *slot};
  ++totals_.snapshots_taken;
  return absl::OkStatus();
}

std::optional<RoundStamp> ConversationCache::LookupSnapshot(const ConversationKey& key,
                                                            std::span<const int32_t> history) {
  const auto idx = index_.find(key);
  if (idx != index_.end()) {
    const std::optional<MambaSnapshot>& snap = entries_.at(idx->second).snapshot;
    if (snap.has_value() && snap->at.num_tokens <= static_cast<int64_t>(history.size()) &&
        TokenHash<int32_t>(history.first(snap->at.num_tokens)) == snap->at.token_hash) {
      ++totals_.snapshot_hits;
      return snap->at;
    }
  }
  ++totals_.snapshot_misses;
  return std::nullopt;
}

absl::Status ConversationCache::Discard(RequestId request) {
  const auto it = requests_.find(request);
  if (it == requests_.end()) return absl::NotFoundError(absl::StrCat("no request ", request));
  Request r = std::move(it->second);
  requests_.erase(it);
  running_by_key_.erase(r.key);
  DiscardImpl(std::move(r));
  return absl::OkStatus();
}

void ConversationCache::DiscardImpl(Request request) {
  coordinator_.Discard(std::move(request.state));
  if (request.pending_snapshot.has_value()) {
    coordinator_.FreeSnapshot(request.pending_snapshot->slot);
  }
  if (request.entry.has_value()) {
    Entry& entry = entries_.at(*request.entry);
    entry.attached.reset();
    entry.last_use = ++clock_;
    MakeEvictable(*request.entry, entry);
  }
}

bool ConversationCache::Forget(const ConversationKey& key) {
  bool forgotten = false;
  if (const auto rk = running_by_key_.find(key); rk != running_by_key_.end()) {
    Request& r = requests_.at(rk->second);
    r.forgotten = true;
    r.entry.reset();
    forgotten = true;
  }
  if (const auto idx = index_.find(key); idx != index_.end()) {
    FreeEntry(idx->second);
    forgotten = true;
  }
  return forgotten;
}

const ConversationCache::Request& ConversationCache::GetRequest(RequestId request) const {
  const auto it = requests_.find(request);
  HC_CHECK(it != requests_.end()) << "no running request " << request;
  return it->second;
}

std::span<const int32_t> ConversationCache::BlockTable(RequestId request) const {
  return GetRequest(request).state.kv.blocks;
}

SlotId ConversationCache::MambaSlot(RequestId request) const {
  return GetRequest(request).state.slot;
}

int64_t ConversationCache::NumTokens(RequestId request) const {
  return GetRequest(request).state.kv.num_tokens;
}

int64_t ConversationCache::NumComputedTokens(RequestId request) const {
  return GetRequest(request).num_computed_tokens;
}

CacheCounters ConversationCache::Counters() const {
  CacheCounters c = totals_;
  const KvBlockPool& pool = coordinator_.pool();
  c.kv_blocks_total = pool.num_blocks();
  c.kv_blocks_free = pool.num_free();
  c.kv_blocks_committed = coordinator_.kv().num_committed_blocks();
  c.kv_blocks_active = pool.num_used() - c.kv_blocks_committed;
  const MambaStateGroup& mamba = coordinator_.mamba();
  c.mamba_slots_total = mamba.num_slots();
  c.mamba_slots_free = mamba.num_free();
  c.mamba_slots_committed = mamba.num_committed();
  c.mamba_slots_active = mamba.num_active();
  c.mamba_slots_snapshot = mamba.num_snapshots();
  c.snapshots = entry_snapshots_;
  c.kv_cow_copies = coordinator_.kv().cow_copies();
  c.mamba_cow_copies = mamba.cow_copies();
  c.conversations = static_cast<int64_t>(entries_.size());
  c.running_requests = static_cast<int64_t>(requests_.size());
  return c;
}

std::optional<ConversationSnapshot> ConversationCache::Inspect(const ConversationKey& key) const {
  const auto idx = index_.find(key);
  if (idx == index_.end()) return std::nullopt;
  const Entry& e = entries_.at(idx->second);
  ConversationSnapshot s;
  s.round = e.round;
  s.blocks = e.state.kv.blocks;
  s.tail_fill = static_cast<int>(e.state.kv.num_tokens % block_size());
  s.mamba_slot = e.state.slot;
  s.last_use = e.last_use;
  s.attached = e.attached.has_value();
  s.snapshot = e.snapshot;
  return s;
}

bool ConversationCache::CouldFit(const ResourceNeed& need, std::optional<EntryId> keep,
                                 bool keep_snapshot) const {
  int64_t blocks = coordinator_.pool().num_free() + evictable_blocks_;
  int64_t slots = coordinator_.mamba().num_free() + evictable_slots_ + entry_snapshots_;
  if (keep.has_value()) {
    const Entry& e = entries_.at(*keep);
    if (!e.attached.has_value()) {
      blocks -= static_cast<int64_t>(e.state.kv.blocks.size());
      slots -= 1;
    }
    if (keep_snapshot && e.snapshot.has_value()) slots -= 1;
  }
  return need.blocks <= blocks && need.slots <= slots;
}

void ConversationCache::MakeRoom(const ResourceNeed& need, std::optional<EntryId> keep_snapshot) {
  while (!coordinator_.Fits(need)) {
    // Snapshots go first: dropping one costs a later rewrite turn a
    // recompute, evicting a committed state costs every next turn one.
    if (need.slots > coordinator_.mamba().num_free() && DropOldestSnapshot(keep_snapshot)) {
      continue;
    }
    const std::optional<EntryId> victim = policy_->PickVictim();
    HC_CHECK(victim.has_value()) << "eviction ran out of idle states although CouldFit held";
    Evict(*victim);
  }
}

void ConversationCache::MakeEvictable(EntryId id, const Entry& entry) {
  const int64_t blocks = static_cast<int64_t>(entry.state.kv.blocks.size());
  policy_->Add({.id = id,
                .num_blocks = blocks,
                .num_slots = 1,
                .num_tokens = entry.state.kv.num_tokens,
                .last_use = entry.last_use});
  evictable_blocks_ += blocks;
  evictable_slots_ += 1;
}

void ConversationCache::MakeUnevictable(EntryId id, const Entry& entry) {
  policy_->Remove(id);
  evictable_blocks_ -= static_cast<int64_t>(entry.state.kv.blocks.size());
  evictable_slots_ -= 1;
}

void ConversationCache::Evict(EntryId id) {
  const Entry& entry = entries_.at(id);
  HC_CHECK(!entry.attached.has_value()) << "eviction policy picked an attached state " << id;
  totals_.kv_evicted_blocks += static_cast<int64_t>(entry.state.kv.blocks.size());
  totals_.mamba_evicted_slots += 1;
  totals_.conversations_evicted += 1;
  if (entry.snapshot.has_value()) ++totals_.snapshots_evicted;
  FreeEntry(id);
}

bool ConversationCache::DropOldestSnapshot(std::optional<EntryId> except) {
  Entry* oldest = nullptr;
  for (auto& [id, e] : entries_) {
    if (!e.snapshot.has_value() || id == except) continue;
    if (oldest == nullptr || e.last_use < oldest->last_use) oldest = &e;
  }
  if (oldest == nullptr) return false;
  FreeEntrySnapshot(*oldest);
  ++totals_.snapshots_evicted;
  return true;
}

void ConversationCache::FreeEntrySnapshot(Entry& entry) {
  if (!entry.snapshot.has_value()) return;
  coordinator_.FreeSnapshot(entry.snapshot->slot);
  entry.snapshot.reset();
  --entry_snapshots_;
}

void ConversationCache::FreeEntry(EntryId id) {
  const auto it = entries_.find(id);
  HC_CHECK(it != entries_.end()) << "erase of unknown entry " << id;
  Entry& entry = it->second;
  if (entry.attached.has_value()) {
    // Forget under a running request: the request keeps its own references.
    Request& r = requests_.at(*entry.attached);
    r.entry.reset();
  } else {
    MakeUnevictable(id, entry);
  }
  FreeEntrySnapshot(entry);
  coordinator_.FreeCommitted(std::move(entry.state));
  index_.erase(entry.key);
  entries_.erase(it);
}

}  // namespace hc::cache
