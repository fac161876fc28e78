// Rewrite turns resumed from a Mamba state snapshot (TurnSpec::snapshot_at):
// the engine splits the prefill at the snapshot point, publishes the snapshot
// with the commit, and a later turn whose history starts with the snapshot's
// tokens computes only what follows it, with the same greedy tokens as a
// one-shot recompute. Without the snapshot (forgotten, another worker) the
// turn recomputes, still exact; a failure after the snapshot point publishes
// nothing.
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/unit/worker/engine/engine_harness.h"

namespace hc::engine {
namespace {

using cache::ConversationKey;
using testing::FreshTurn;
using testing::Greedy;
using testing::Harness;
using testing::HarnessOptions;
using testing::RandomTokens;
using testing::Recorder;

constexpr int kReplyTokens = 5;
constexpr int32_t kGenPrompt[] = {1, 2};  // what the "template" writes before a reply
constexpr int32_t kEndOfReply = 0;        // what it writes after a reply in history

// Plays a router over a chat template that is not prefix-stable: the
// generation prompt (kGenPrompt) is not written before earlier replies, so
// every continuing turn keeps the committed tokens only up to the end of the
// previous prompt's last message (P) and sends the rest again, as history up
// to P plus the re-rendered reply, the new message and the generation prompt.
// Each turn asks for a snapshot at its own last message's end.
class RewriteChat {
 public:
  RewriteChat(Harness* h, std::string id) : h_(h), key_{"", std::move(id)} {}

  TurnSpec Next(const std::vector<int32_t>& message) {
    TurnSpec t;
    t.key = key_;
    t.request_id = absl::StrCat(key_.conversation_id, "/", round_ + 1, "/", attempt_++);
    t.new_round = round_ + 1;
    t.sampling = Greedy(kReplyTokens);
    t.history = kept_;
    t.has_history = !kept_.empty();
    if (!last_reply_.empty()) {
      t.suffix = last_reply_;
      t.suffix.push_back(kEndOfReply);
    }
    t.suffix.insert(t.suffix.end(), message.begin(), message.end());
    t.snapshot_at = static_cast<int64_t>(kept_.size() + t.suffix.size());
    t.suffix.insert(t.suffix.end(), std::begin(kGenPrompt), std::end(kGenPrompt));
    return t;
  }
  // Records a committed turn: the next one keeps its context up to P.
  void Committed(const TurnSpec& t, const Recorder& rec) {
    std::vector<int32_t> context = t.history;
    context.insert(context.end(), t.suffix.begin(), t.suffix.end());
    kept_.assign(context.begin(), context.begin() + *t.snapshot_at);
    last_reply_ = rec.tokens;
    round_ = t.new_round;
  }
  std::shared_ptr<Recorder> Turn(const std::vector<int32_t>& message) {
    const TurnSpec t = Next(message);
    auto rec = h_->Run(t);
    if (rec->result.has_value()) Committed(t, *rec);
    return rec;
  }

  // The context the worker computes for `t`: history then suffix.
  static std::vector<int32_t> Context(const TurnSpec& t) {
    std::vector<int32_t> c = t.history;
    c.insert(c.end(), t.suffix.begin(), t.suffix.end());
    return c;
  }
  const ConversationKey& key() const { return key_; }

 private:
  Harness* h_;
  ConversationKey key_;
  std::vector<int32_t> kept_;
  std::vector<int32_t> last_reply_;
  uint64_t round_ = 0;
  int attempt_ = 0;
};

// Greedy tokens of a one-shot completion of `context` in a fresh conversation.
std::vector<int32_t> OneShot(Harness& scratch, const std::vector<int32_t>& context) {
  static int n = 0;
  TurnSpec t = FreshTurn(absl::StrCat("one-shot-", n++), kReplyTokens);
  t.suffix = context;
  auto rec = scratch.Run(t);
  EXPECT_TRUE(rec->result.has_value()) << rec->failed;
  return rec->tokens;
}

TEST(EngineSnapshotTest, RewriteTurnsResumeFromTheSnapshotAndEqualOneShotRecompute) {
  Harness h, scratch;
  RewriteChat chat(&h, "c");
  std::mt19937 rng(7);
  int64_t prev_p = 0;
  for (int turn = 0; turn < 5; ++turn) {
    const TurnSpec t = chat.Next(RandomTokens(rng, 6 + 5 * turn));
    const int64_t computed_before = h.model().tokens_computed();
    auto rec = h.Run(t);
    ASSERT_TRUE(rec->result.has_value()) << rec->failed;
    chat.Committed(t, *rec);
    EXPECT_EQ(rec->tokens, OneShot(scratch, RewriteChat::Context(t))) << "turn " << turn;
    EXPECT_EQ(rec->start.cached_tokens, prev_p) << "turn " << turn;
    // Only the tokens after the snapshot, and the reply but its last token.
    const int64_t context = static_cast<int64_t>(t.history.size() + t.suffix.size());
    EXPECT_EQ(h.model().tokens_computed() - computed_before, context - prev_p + kReplyTokens - 1);
    ASSERT_TRUE(rec->result->snapshot.has_value());
    EXPECT_EQ(rec->result->snapshot->num_tokens, *t.snapshot_at);
    const std::vector<int32_t> full = RewriteChat::Context(t);
    EXPECT_EQ(rec->result->snapshot->token_hash,
              TokenHash<int32_t>(std::span(full).first(*t.snapshot_at)));
    prev_p = *t.snapshot_at;
  }
  ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
  const cache::CacheCounters c = h.engine().Load().cache;
  EXPECT_EQ(c.snapshots_taken, 5);
  EXPECT_EQ(c.snapshot_hits, 4);
  EXPECT_EQ(c.snapshots, 1);
  EXPECT_EQ(c.mamba_slots_snapshot, 1);
  EXPECT_EQ(c.mamba_slots_active, 0);
}

TEST(EngineSnapshotTest, PrefillIsSplitAtTheSnapshotPoint) {
  Harness h({.max_batch_tokens = 64});
  RewriteChat chat(&h, "c");
  std::mt19937 rng(8);
  const TurnSpec t = chat.Next(RandomTokens(rng, 20));
  auto rec = h.Run(t);
  ASSERT_TRUE(rec->result.has_value()) << rec->failed;
  ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
  // One chunk ends exactly at P (22 tokens fit one step; they take two).
  const auto& calls = h.model().calls();
  ASSERT_GE(calls.size(), 2u);
  EXPECT_EQ(calls[0][0].num_computed_tokens, 0);
  EXPECT_EQ(calls[0][0].num_tokens, *t.snapshot_at);
  EXPECT_EQ(calls[1][0].num_computed_tokens, *t.snapshot_at);
}

TEST(EngineSnapshotTest, WithoutTheSnapshotTheTurnRecomputesAndStaysExact) {
  Harness h, restarted, scratch;
  RewriteChat chat(&h, "c");
  std::mt19937 rng(9);
  ASSERT_TRUE(chat.Turn(RandomTokens(rng, 7))->result.has_value());
  const TurnSpec t = chat.Next(RandomTokens(rng, 9));
  // Another worker (or this one restarted) holds nothing: a full recompute.
  auto elsewhere = restarted.Run(t);
  ASSERT_TRUE(elsewhere->result.has_value()) << elsewhere->failed;
  EXPECT_EQ(elsewhere->start.cached_tokens, 0);
  // Forgotten here: the same.
  ASSERT_TRUE(h.ForgetAndWait(chat.key()));
  TurnSpec again = t;
  again.request_id += "/after-forget";
  auto forgotten = h.Run(again);
  ASSERT_TRUE(forgotten->result.has_value()) << forgotten->failed;
  EXPECT_EQ(forgotten->start.cached_tokens, 0);
  const std::vector<int32_t> expected = OneShot(scratch, RewriteChat::Context(t));
  EXPECT_EQ(elsewhere->tokens, expected);
  EXPECT_EQ(forgotten->tokens, expected);
  ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
  EXPECT_EQ(h.engine().Load().cache.snapshot_misses, 1);
}

TEST(EngineSnapshotTest, AFailureAfterTheSnapshotPointPublishesNothing) {
  Harness h({.max_batch_tokens = 4}), scratch;
  RewriteChat chat(&h, "c");
  std::mt19937 rng(10);
  ASSERT_TRUE(chat.Turn(RandomTokens(rng, 7))->result.has_value());
  ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
  const cache::ConversationSnapshot before = h.cache().Inspect(chat.key()).value();
  ASSERT_TRUE(before.snapshot.has_value());

  const TurnSpec t = chat.Next(RandomTokens(rng, 9));
  h.gate().FailPast(*t.snapshot_at);  // the first chunk after the new snapshot
  auto failed = h.Run(t);
  ASSERT_FALSE(failed->result.has_value());
  EXPECT_EQ(failed->failed.code(), absl::StatusCode::kInternal);
  ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
  const cache::ConversationSnapshot after = h.cache().Inspect(chat.key()).value();
  EXPECT_EQ(after.round, before.round);
  EXPECT_EQ(after.snapshot->at, before.snapshot->at);
  const cache::CacheCounters c = h.engine().Load().cache;
  EXPECT_EQ(c.snapshots_taken, 2);  // the failed turn's was taken, then dropped
  EXPECT_EQ(c.mamba_slots_snapshot, 1);
  EXPECT_EQ(c.mamba_slots_active, 0);

  // The retry resumes from the old snapshot and is exact.
  TurnSpec retry = t;
  retry.request_id += "/retry";
  auto rec = h.Run(retry);
  ASSERT_TRUE(rec->result.has_value()) << rec->failed;
  EXPECT_EQ(rec->start.cached_tokens, before.snapshot->at.num_tokens);
  EXPECT_EQ(rec->tokens, OneShot(scratch, RewriteChat::Context(t)));
}

TEST(EngineSnapshotTest, RacingConversationsEachResumeFromTheirOwnSnapshot) {
  Harness h({.max_batch_tokens = 8}), scratch;
  RewriteChat a(&h, "a"), b(&h, "b");
  std::mt19937 rng(11);
  int64_t prev_a = 0, prev_b = 0;
  for (int turn = 0; turn < 4; ++turn) {
    const TurnSpec ta = a.Next(RandomTokens(rng, 5 + turn));
    const TurnSpec tb = b.Next(RandomTokens(rng, 9 + turn));
    auto ra = h.Start(ta);
    auto rb = h.Start(tb);
    ra->done.WaitForNotification();
    rb->done.WaitForNotification();
    ASSERT_TRUE(ra->result.has_value()) << ra->failed;
    ASSERT_TRUE(rb->result.has_value()) << rb->failed;
    a.Committed(ta, *ra);
    b.Committed(tb, *rb);
    EXPECT_EQ(ra->start.cached_tokens, prev_a);
    EXPECT_EQ(rb->start.cached_tokens, prev_b);
    EXPECT_EQ(ra->tokens, OneShot(scratch, RewriteChat::Context(ta))) << "turn " << turn;
    EXPECT_EQ(rb->tokens, OneShot(scratch, RewriteChat::Context(tb))) << "turn " << turn;
    prev_a = *ta.snapshot_at;
    prev_b = *tb.snapshot_at;
  }
}

TEST(EngineSnapshotTest, PreemptedTurnsRetakeTheirSnapshotsExactly) {
  // Both turns prefill their 40 tokens (10 blocks each, snapshots taken at
  // 38), then decoding outgrows the 24 blocks: the newer one is preempted
  // (its pending snapshot discarded) and recomputed (the snapshot taken again).
  Harness h({.kv_blocks = 24, .mamba_slots = 6, .block_size = 4, .max_batch_tokens = 8});
  Harness scratch({.kv_blocks = 512});
  std::mt19937 rng(12);
  std::vector<RewriteChat> chats = {RewriteChat(&h, "long0"), RewriteChat(&h, "long1")};
  std::vector<TurnSpec> turns;
  std::vector<std::shared_ptr<Recorder>> recs;
  // The engine is held in the first turn's first step until the second turn
  // is queued: otherwise a descheduled test thread lets the first turn finish
  // alone, and the second evicts its committed state instead of preempting.
  h.gate().BlockAt(1);
  for (RewriteChat& c : chats) {
    turns.push_back(c.Next(RandomTokens(rng, 38)));
    turns.back().sampling = Greedy(30);
    recs.push_back(h.Start(turns.back()));
    if (recs.size() == 1) h.gate().AwaitBlocked();
  }
  h.gate().Release();
  for (size_t i = 0; i < 2; ++i) {
    recs[i]->done.WaitForNotification();
    ASSERT_TRUE(recs[i]->result.has_value()) << recs[i]->failed;
    ASSERT_TRUE(recs[i]->result->snapshot.has_value());
    const std::vector<int32_t> context = RewriteChat::Context(turns[i]);
    EXPECT_EQ(recs[i]->result->snapshot->token_hash,
              TokenHash<int32_t>(std::span(context).first(38)));
    chats[i].Committed(turns[i], *recs[i]);
  }
  ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
  const cache::CacheCounters c = h.engine().Load().cache;
  EXPECT_GT(c.snapshots_taken, 2) << "the scenario must preempt after a snapshot";
  // Two committed states do not fit either: one may have been evicted, and
  // its snapshot with it.
  EXPECT_GE(c.conversations, 1);
  EXPECT_EQ(c.mamba_slots_snapshot, c.conversations);
  EXPECT_EQ(c.mamba_slots_active, 0);
  // Each resumes from its own snapshot when the worker still holds it, and
  // is exact either way.
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
    const bool held = h.cache().Inspect(chats[i].key()).has_value();
    const TurnSpec t = chats[i].Next(RandomTokens(rng, 3));
    auto rec = h.Run(t);
    ASSERT_TRUE(rec->result.has_value()) << rec->failed;
    EXPECT_EQ(rec->start.cached_tokens, held ? 38 : 0) << i;
    EXPECT_EQ(rec->tokens, OneShot(scratch, RewriteChat::Context(t))) << i;
  }
}

TEST(EngineSnapshotTest, SnapshotPointOutsideTheContextIsRefused) {
  Harness h;
  for (const int64_t at : {int64_t{0}, int64_t{4}, int64_t{-1}}) {
    TurnSpec t = FreshTurn("r");
    t.snapshot_at = at;  // the context is 3 tokens
    const absl::Status s = h.engine().Submit(t, std::make_shared<Recorder>());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << at;
  }
  TurnSpec t = FreshTurn("ok");
  t.snapshot_at = 3;
  auto rec = h.Run(t);
  ASSERT_TRUE(rec->result.has_value()) << rec->failed;
  EXPECT_EQ(rec->result->snapshot->num_tokens, 3);
}

}  // namespace
}  // namespace hc::engine
