// Randomized model-based test of ConversationCache: thousands of seeded random
// engine operations (new conversations, turns of random lengths, cancels
// mid-turn, interleaved conversations, memory pressure with evictions, drops,
// two salts sharing conversation ids), each followed by a full comparison with
// a simple reference model:
//   - which conversations are stored, at which round (LRU evictions predicted);
//   - block refcounts equal the number of committed states and requests that
//     hold each block, committed states share nothing, owned blocks are private;
//   - the bytes of every committed block and slot are unchanged by running or
//     discarded requests (requests scribble over everything they own);
//   - counters add up, and nothing is in use when no request runs.
#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/worker/cache/cache_test_util.h"
#include "worker/cache/conversation_cache.h"

namespace hc::cache {
namespace {

using testing::FillKvRows;
using testing::FillSlot;
using testing::MakeSmallMemory;
using testing::SequenceChecksum;
using testing::SlotChecksum;
using testing::SlotIsZero;

constexpr int kBlockSize = 4;
constexpr int kNumBlocks = 64;
constexpr int kNumSlots = 14;
constexpr int kNumSalts = 2;
constexpr int kNumIds = 8;
constexpr int kStepsPerSeed = 5000;

using RefKey = std::pair<int, int>;  // (salt, conversation id)

ConversationKey KeyOf(const RefKey& k) {
  static const char* const kSalts[kNumSalts] = {"tenant-a", "tenant-b"};
  return {kSalts[k.first], "conv-" + std::to_string(k.second)};
}

int64_t Blocks(int64_t tokens) { return (tokens + kBlockSize - 1) / kBlockSize; }

struct RefConv {
  RoundStamp stamp;
  uint64_t kv_sum = 0;    // checksum of the committed token rows
  uint64_t slot_sum = 0;  // checksum of the committed Mamba state
  bool attached = false;
};

struct RefRequest {
  RefKey key;
  bool from_committed = false;  // attached to a committed state (else fresh)
  bool base_alive = false;      // that state still exists (shares its full blocks)
  bool forgotten = false;       // Forget(key) ran while it was running
  uint64_t base_round = 0;
  int64_t computed = 0;
  int64_t num_tokens = 0;
  int64_t shared() const { return from_committed ? computed / kBlockSize : 0; }
};

class ConversationCacheModelTest : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override {
    rng_.seed(GetParam());
    mem_ = MakeSmallMemory({.num_blocks = kNumBlocks,
                            .block_size = kBlockSize,
                            .num_slots = kNumSlots,
                            .num_ranks = 2});
    ConversationCache::Options options;
    options.memory = mem_.get();
    cache_ = ConversationCache::Create(std::move(options)).value();
  }

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  RefKey RandomKey() { return {Uniform(0, kNumSalts - 1), Uniform(0, kNumIds - 1)}; }

  // ---- Reference model ----------------------------------------------------
  int64_t RefUsedBlocks() const {
    int64_t used = 0;
    for (const auto& [k, c] : convs_) used += Blocks(c.stamp.num_tokens);
    for (const auto& [id, r] : reqs_)
      used += Blocks(r.num_tokens) - (r.base_alive ? r.shared() : 0);
    return used;
  }
  int64_t RefCommittedBlocks() const {
    int64_t n = 0;
    for (const auto& [k, c] : convs_) n += Blocks(c.stamp.num_tokens);
    return n;
  }
  int64_t RefFreeBlocks() const { return kNumBlocks - RefUsedBlocks(); }
  int64_t RefFreeSlots() const {
    return kNumSlots - static_cast<int64_t>(convs_.size() + reqs_.size());
  }
  // Whether the need fits after evicting every idle state but `keep`.
  bool RefCouldFit(int64_t blocks, int64_t slots, const RefKey* keep) const {
    int64_t b = RefFreeBlocks();
    int64_t s = RefFreeSlots();
    for (const RefKey& k : idle_lru_) {
      if (keep != nullptr && k == *keep) continue;
      b += Blocks(convs_.at(k).stamp.num_tokens);
      s += 1;
    }
    return blocks <= b && slots <= s;
  }
  void RefMakeRoom(int64_t blocks, int64_t slots) {
    while (RefFreeBlocks() < blocks || RefFreeSlots() < slots) {
      ASSERT_FALSE(idle_lru_.empty());
      const RefKey victim = idle_lru_.front();
      idle_lru_.pop_front();
      evicted_blocks_ += Blocks(convs_.at(victim).stamp.num_tokens);
      ++evictions_;
      convs_.erase(victim);
    }
  }
  void RefUnidle(const RefKey& k) {
    const auto it = std::find(idle_lru_.begin(), idle_lru_.end(), k);
    if (it != idle_lru_.end()) idle_lru_.erase(it);
  }
  const RefRequest* RequestOn(const RefKey& k, RequestId* id) const {
    for (const auto& [rid, r] : reqs_) {
      if (r.key == k) {
        *id = rid;
        return &r;
      }
    }
    return nullptr;
  }
  RequestId RandomRequest() {
    auto it = reqs_.begin();
    std::advance(it, Uniform(0, static_cast<int>(reqs_.size()) - 1));
    return it->first;
  }

  // ---- What the model writes ----------------------------------------------
  // Scribbles over every block the request owns (all rows) and its state.
  void ScribbleOwned(RequestId id) {
    std::span<const int32_t> table = cache_->BlockTable(id);
    for (size_t i = reqs_.at(id).shared(); i < table.size(); ++i) {
      FillKvRows(*mem_, table[i], 0, kBlockSize, rng_);
    }
    FillSlot(*mem_, cache_->MambaSlot(id), rng_);
  }
  // Writes rows [from, to) of the request's sequence, as a forward pass does.
  void WriteRows(RequestId id, int64_t from, int64_t to) {
    std::span<const int32_t> table = cache_->BlockTable(id);
    for (int64_t pos = from; pos < to; ++pos) {
      const int row = static_cast<int>(pos % kBlockSize);
      FillKvRows(*mem_, table[pos / kBlockSize], row, row + 1, rng_);
    }
    FillSlot(*mem_, cache_->MambaSlot(id), rng_);
  }

  // ---- Operations -----------------------------------------------------------
  void StartTurn() {
    const RefKey k = RandomKey();
    const ConversationKey key = KeyOf(k);
    RequestId running;
    if (RequestOn(k, &running) != nullptr) {
      EXPECT_EQ(cache_->AttachFresh(key).status().code(), absl::StatusCode::kAborted);
      return;
    }
    const auto conv = convs_.find(k);
    if (conv != convs_.end()) {
      RoundStamp expected = conv->second.stamp;
      const bool mismatch = Chance(0.15);
      if (mismatch) expected.token_hash ^= 1;  // the router holds different tokens
      ++lookups_[mismatch ? 2 : 0];
      ASSERT_EQ(cache_->Lookup(key, expected),
                mismatch ? LookupResult::kStale : LookupResult::kHit);
      if (!mismatch) {
        const int64_t len = expected.num_tokens;
        const int64_t need_blocks = len % kBlockSize != 0 ? 1 : 0;
        const bool fits = RefCouldFit(need_blocks, 1, &k);
        absl::StatusOr<AttachResult> r = cache_->Attach(key, expected);
        ASSERT_EQ(r.ok(), fits) << r.status();
        if (!fits) {
          ASSERT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
          return;
        }
        ASSERT_EQ(r->num_computed_tokens, len);
        conv->second.attached = true;
        RefUnidle(k);
        RefMakeRoom(need_blocks, 1);
        kv_cow_ += need_blocks;
        ++mamba_cow_;
        reqs_[r->request] = {.key = k,
                             .from_committed = true,
                             .base_alive = true,
                             .base_round = expected.round,
                             .computed = len,
                             .num_tokens = len};
        // The request starts from exact copies of the committed state.
        ASSERT_EQ(SequenceChecksum(*mem_, cache_->BlockTable(r->request), len),
                  convs_.at(k).kv_sum);
        ASSERT_EQ(SlotChecksum(*mem_, cache_->MambaSlot(r->request)), convs_.at(k).slot_sum);
        if (Chance(0.5)) ScribbleOwned(r->request);
        return;
      }
      EXPECT_EQ(cache_->Attach(key, expected).status().code(),
                absl::StatusCode::kFailedPrecondition);
    } else {
      const RoundStamp guess{.round = 1, .num_tokens = Uniform(1, 9), .token_hash = rng_()};
      ++lookups_[1];
      ASSERT_EQ(cache_->Lookup(key, guess), LookupResult::kMiss);
      EXPECT_EQ(cache_->Attach(key, guess).status().code(), absl::StatusCode::kNotFound);
    }
    // A new conversation, or a recompute after a stale lookup.
    const bool fits = RefCouldFit(0, 1, nullptr);
    absl::StatusOr<AttachResult> r = cache_->AttachFresh(key);
    ASSERT_EQ(r.ok(), fits) << r.status();
    if (!fits) {
      ASSERT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
      return;
    }
    ASSERT_EQ(r->num_computed_tokens, 0);
    RefMakeRoom(0, 1);
    reqs_[r->request] = {.key = k};
    ASSERT_TRUE(SlotIsZero(*mem_, cache_->MambaSlot(r->request)));
    FillSlot(*mem_, cache_->MambaSlot(r->request), rng_);
  }

  void AppendTokens() {
    const RequestId id = RandomRequest();
    RefRequest& r = reqs_.at(id);
    const int64_t n = Uniform(0, 3 * kBlockSize);
    const int64_t need = Blocks(r.num_tokens + n) - Blocks(r.num_tokens);
    const bool fits = RefCouldFit(need, 0, nullptr);
    ASSERT_EQ(cache_->CanAppend(id, n), fits);
    const absl::Status s = cache_->Append(id, n);
    ASSERT_EQ(s.ok(), fits) << s;
    if (!fits) {
      ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
      if (Chance(0.5)) DiscardRequest(id);  // the engine preempts it
      return;
    }
    RefMakeRoom(need, 0);
    ASSERT_EQ(cache_->NumTokens(id), r.num_tokens + n);
    WriteRows(id, r.num_tokens, r.num_tokens + n);
    r.num_tokens += n;
  }

  void CommitRequest() {
    const RequestId id = RandomRequest();
    const RefRequest r = reqs_.at(id);
    if (r.forgotten) {
      ASSERT_EQ(cache_->Commit(id, {}).code(), absl::StatusCode::kAborted);
      reqs_.erase(id);
      return;
    }
    const auto old = convs_.find(r.key);
    const uint64_t prev_round = r.from_committed      ? r.base_round
                                : old != convs_.end() ? old->second.stamp.round
                                                      : 0;
    if (Chance(0.05)) {  // an engine bug: commit more tokens than computed
      ASSERT_EQ(
          cache_->Commit(id, {.round = prev_round + 1, .num_tokens = r.num_tokens + 1}).code(),
          absl::StatusCode::kInvalidArgument);
      RetireRequest(id);
      return;
    }
    const int64_t len = Chance(0.7)
                            ? r.num_tokens
                            : Uniform(static_cast<int>(r.computed), static_cast<int>(r.num_tokens));
    RefConv next;
    next.stamp = {.round = prev_round + 1, .num_tokens = len, .token_hash = rng_()};
    next.kv_sum = SequenceChecksum(*mem_, cache_->BlockTable(id), len);
    next.slot_sum = SlotChecksum(*mem_, cache_->MambaSlot(id));
    ASSERT_TRUE(cache_->Commit(id, next.stamp).ok());
    reqs_.erase(id);
    RefUnidle(r.key);
    convs_[r.key] = next;
    idle_lru_.push_back(r.key);
  }

  // The reference side of a request ending without a publish.
  void RetireRequest(RequestId id) {
    const RefRequest r = reqs_.at(id);
    reqs_.erase(id);
    if (r.base_alive) {
      convs_.at(r.key).attached = false;
      idle_lru_.push_back(r.key);
    }
  }

  void DiscardRequest(RequestId id) {
    ASSERT_TRUE(cache_->Discard(id).ok());
    RetireRequest(id);
  }

  void ForgetConversation() {
    const RefKey k = RandomKey();
    RequestId running = 0;
    const bool has_request = RequestOn(k, &running) != nullptr;
    const bool has_conv = convs_.contains(k);
    ASSERT_EQ(cache_->Forget(KeyOf(k)), has_request || has_conv);
    if (has_conv) {
      RefUnidle(k);
      convs_.erase(k);
    }
    if (has_request) {
      reqs_.at(running).forgotten = true;
      reqs_.at(running).base_alive = false;
    }
  }

  // A lookup of one key with the stamp of another (often the same id under
  // the other salt): only the key's own state may answer.
  void CrossLookup() {
    const RefKey k = RandomKey();
    const RefKey other = Chance(0.5) ? RefKey{1 - k.first, k.second} : RandomKey();
    RoundStamp stamp{.round = 1, .num_tokens = 4, .token_hash = rng_()};
    if (const auto it = convs_.find(other); it != convs_.end()) stamp = it->second.stamp;
    LookupResult want = LookupResult::kMiss;
    if (const auto it = convs_.find(k); it != convs_.end()) {
      want = it->second.stamp == stamp ? LookupResult::kHit : LookupResult::kStale;
    }
    ++lookups_[static_cast<int>(want)];
    ASSERT_EQ(cache_->Lookup(KeyOf(k), stamp), want);
  }

  void Step() {
    const int op = Uniform(0, 99);
    if (op < 25) {
      StartTurn();
    } else if (reqs_.empty() || op >= 90) {
      if (op % 3 == 0) {
        ForgetConversation();
      } else {
        CrossLookup();
      }
    } else if (op < 58) {
      AppendTokens();
    } else if (op < 74) {
      CommitRequest();
    } else if (op < 82) {
      DiscardRequest(RandomRequest());
    } else {
      ScribbleOwned(RandomRequest());
    }
  }

  // ---- Checks against the reference ---------------------------------------
  void CheckAll() {
    const CacheCounters c = cache_->Counters();
    ASSERT_EQ(c.conversations, static_cast<int64_t>(convs_.size()));
    ASSERT_EQ(c.running_requests, static_cast<int64_t>(reqs_.size()));
    ASSERT_EQ(c.kv_blocks_free, RefFreeBlocks());
    ASSERT_EQ(c.kv_blocks_committed, RefCommittedBlocks());
    ASSERT_EQ(c.kv_blocks_active, RefUsedBlocks() - RefCommittedBlocks());
    ASSERT_EQ(c.kv_blocks_free + c.kv_blocks_committed + c.kv_blocks_active, kNumBlocks);
    ASSERT_EQ(c.mamba_slots_free, RefFreeSlots());
    ASSERT_EQ(c.mamba_slots_committed, static_cast<int64_t>(convs_.size()));
    ASSERT_EQ(c.mamba_slots_active, static_cast<int64_t>(reqs_.size()));
    ASSERT_EQ(c.conversations_evicted, evictions_);
    ASSERT_EQ(c.kv_evicted_blocks, evicted_blocks_);
    ASSERT_EQ(c.mamba_evicted_slots, evictions_);
    ASSERT_EQ(c.kv_cow_copies, kv_cow_);
    ASSERT_EQ(c.mamba_cow_copies, mamba_cow_);
    ASSERT_EQ(c.lookups_hit, lookups_[0]);
    ASSERT_EQ(c.lookups_miss, lookups_[1]);
    ASSERT_EQ(c.lookups_stale, lookups_[2]);
    if (reqs_.empty()) {  // nothing leaks when idle
      ASSERT_EQ(c.kv_blocks_active, 0);
      ASSERT_EQ(c.mamba_slots_active, 0);
    }

    std::vector<int> committed_refs(kNumBlocks, 0);
    std::vector<int> refs(kNumBlocks, 0);
    std::vector<int> slot_users(kNumSlots, 0);
    std::map<RefKey, ConversationSnapshot> snaps;
    for (const auto& [k, ref] : convs_) {
      const std::optional<ConversationSnapshot> s = cache_->Inspect(KeyOf(k));
      ASSERT_TRUE(s.has_value()) << "conversation " << k.first << "/" << k.second << " missing";
      ASSERT_EQ(s->round, ref.stamp);
      ASSERT_EQ(s->attached, ref.attached);
      ASSERT_EQ(static_cast<int64_t>(s->blocks.size()), Blocks(ref.stamp.num_tokens));
      ASSERT_EQ(s->tail_fill, ref.stamp.num_tokens % kBlockSize);
      // Committed bytes are exactly what was published.
      ASSERT_EQ(SequenceChecksum(*mem_, s->blocks, ref.stamp.num_tokens), ref.kv_sum);
      ASSERT_EQ(SlotChecksum(*mem_, s->mamba_slot), ref.slot_sum);
      ASSERT_EQ(cache_->coordinator().mamba().state(s->mamba_slot), SlotState::kCommitted);
      ++slot_users[s->mamba_slot];
      for (const BlockId b : s->blocks) {
        ++committed_refs[b];
        ++refs[b];
      }
      snaps[k] = *s;
    }
    for (const auto& [id, r] : reqs_) {
      std::span<const int32_t> table = cache_->BlockTable(id);
      ASSERT_EQ(static_cast<int64_t>(table.size()), Blocks(r.num_tokens));
      ASSERT_EQ(cache_->NumTokens(id), r.num_tokens);
      const SlotId slot = cache_->MambaSlot(id);
      ASSERT_EQ(cache_->coordinator().mamba().state(slot), SlotState::kActive);
      ++slot_users[slot];
      for (size_t i = 0; i < table.size(); ++i) {
        ++refs[table[i]];
        if (r.base_alive && static_cast<int64_t>(i) < r.shared()) {
          ASSERT_EQ(table[i], snaps.at(r.key).blocks[i]) << "shared prefix differs";
        }
      }
    }
    const KvBlockPool& pool = cache_->coordinator().pool();
    for (BlockId b = 0; b < kNumBlocks; ++b) {
      ASSERT_LE(committed_refs[b], 1) << "block " << b << " in two committed states";
      ASSERT_EQ(pool.refcount(b), refs[b]) << "refcount of block " << b;
    }
    for (const auto& [id, r] : reqs_) {  // what a request writes is private
      std::span<const int32_t> table = cache_->BlockTable(id);
      for (size_t i = r.shared(); i < table.size(); ++i) {
        ASSERT_EQ(pool.refcount(table[i]), 1) << "request-owned block " << table[i] << " shared";
      }
    }
    for (SlotId s = 0; s < kNumSlots; ++s) {
      ASSERT_LE(slot_users[s], 1) << "slot " << s << " has two owners";
      if (slot_users[s] == 0) {
        ASSERT_EQ(cache_->coordinator().mamba().state(s), SlotState::kFree);
      }
    }
  }

  std::mt19937_64 rng_;
  std::unique_ptr<runtime::BackendCacheMemory> mem_;
  std::unique_ptr<ConversationCache> cache_;
  std::map<RefKey, RefConv> convs_;
  std::deque<RefKey> idle_lru_;  // front: least recently used idle state
  std::map<RequestId, RefRequest> reqs_;
  int64_t evictions_ = 0;
  int64_t evicted_blocks_ = 0;
  int64_t kv_cow_ = 0;
  int64_t mamba_cow_ = 0;
  int64_t lookups_[3] = {0, 0, 0};  // hit, miss, stale
};

TEST_P(ConversationCacheModelTest, RandomTurnsMatchTheReferenceModel) {
  for (int step = 0; step < kStepsPerSeed; ++step) {
    SCOPED_TRACE(::testing::Message() << "seed " << GetParam() << " step " << step);
    Step();
    if (HasFatalFailure() || HasFailure()) return;
    CheckAll();
    if (HasFatalFailure()) return;
  }
  // The run must have exercised what it claims to.
  const CacheCounters c = cache_->Counters();
  EXPECT_GT(c.conversations_evicted, 0);
  EXPECT_GT(c.kv_cow_copies, 0);
  EXPECT_GT(c.lookups_stale, 0);

  // Wind down: end every request, then drop every conversation.
  while (!reqs_.empty()) {
    const RequestId id = reqs_.begin()->first;
    if (Chance(0.5) && !reqs_.at(id).forgotten) {
      CommitRequest();  // may pick another request; loops until none is left
    } else {
      DiscardRequest(id);
    }
    ASSERT_NO_FATAL_FAILURE(CheckAll());
  }
  for (int s = 0; s < kNumSalts; ++s) {
    for (int i = 0; i < kNumIds; ++i) {
      cache_->Forget(KeyOf({s, i}));
      convs_.erase({s, i});
    }
  }
  idle_lru_.clear();
  ASSERT_NO_FATAL_FAILURE(CheckAll());
  EXPECT_EQ(cache_->Counters().kv_blocks_free, kNumBlocks);
  EXPECT_EQ(cache_->Counters().mamba_slots_free, kNumSlots);
}

INSTANTIATE_TEST_SUITE_P(Seeds, ConversationCacheModelTest,
                         ::testing::Values(1, 2, 3, 4, 5, 6, 7, 8));

}  // namespace
}  // namespace hc::cache
