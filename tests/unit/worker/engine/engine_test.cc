#include "worker/engine/engine.h"

#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/unit/worker/engine/engine_harness.h"

namespace hc::engine {
namespace {

using cache::ConversationKey;
using cache::RoundStamp;
using testing::Conversation;
using testing::FreshTurn;
using testing::Greedy;
using testing::Harness;
using testing::HarnessOptions;
using testing::kEos;
using testing::kVocab;
using testing::RandomTokens;
using testing::Recorder;

TEST(EngineTest, CachedTurnsComputeOnlyTheSuffixAndMatchFullRecompute) {
  Harness cached, scratch;
  Conversation a(&cached, "conv"), b(&scratch, "conv");
  std::mt19937 rng(1);
  int64_t prev_context = 0;
  for (int turn = 0; turn < 6; ++turn) {
    const auto suffix = RandomTokens(rng, 3 + turn * 5);
    const int64_t before = cached.model().tokens_computed();
    auto ra = a.Turn(suffix, 7);
    auto rb = b.Turn(suffix, 7, /*use_cache=*/false);
    ASSERT_TRUE(ra->result.has_value()) << ra->failed;
    ASSERT_TRUE(rb->result.has_value()) << rb->failed;
    EXPECT_EQ(ra->tokens, rb->tokens) << "turn " << turn;
    EXPECT_EQ(ra->start.prompt_tokens, rb->start.prompt_tokens);
    if (turn > 0) {
      // Everything but the last sampled token of the previous turn is cached.
      EXPECT_EQ(ra->start.cached_tokens, prev_context - 1);
      // Computed: the previous last token, the suffix, and generated tokens but the last.
      EXPECT_EQ(cached.model().tokens_computed() - before,
                1 + static_cast<int64_t>(suffix.size()) + 7 - 1);
    }
    EXPECT_EQ(rb->start.cached_tokens, 0);
    EXPECT_EQ(ra->result->committed.num_tokens, static_cast<int64_t>(a.ledger().size()) - 1);
    EXPECT_EQ(ra->result->committed.token_hash,
              TokenHash<int32_t>(std::span(a.ledger()).first(a.ledger().size() - 1)));
    EXPECT_EQ(ra->result->finish_reason, "length");
    EXPECT_EQ(ra->result->completion_tokens, 7);
    prev_context = static_cast<int64_t>(a.ledger().size());
  }
  EXPECT_EQ(a.resends(), 0);
}

TEST(EngineTest, UnknownStateWithoutHistoryIsReportedMissingAndChangesNothing) {
  Harness h;
  TurnSpec t;
  t.key = {"", "ghost"};
  t.request_id = "r1";
  t.expected = RoundStamp{.round = 3, .num_tokens = 10, .token_hash = 42};
  t.new_round = 4;
  t.suffix = {5, 6};
  t.sampling = Greedy(2);
  auto rec = h.Run(t);
  ASSERT_TRUE(rec->missing.has_value());
  EXPECT_EQ(rec->started, 0);
  EXPECT_TRUE(rec->tokens.empty());
  ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
  EXPECT_EQ(h.engine().Load().cache.conversations, 0);
  EXPECT_EQ(h.engine().Load().cache.lookups_miss, 1);
}

TEST(EngineTest, StaleExpectationIsAMissNeverAGuess) {
  Harness h;
  Conversation c(&h, "c");
  std::mt19937 rng(2);
  ASSERT_TRUE(c.Turn(RandomTokens(rng, 5), 3)->result.has_value());
  RoundStamp wrong = *c.stamp();
  wrong.token_hash ^= 1;  // same round and length, other tokens
  TurnSpec t;
  t.key = c.key();
  t.request_id = "stale";
  t.expected = wrong;
  t.new_round = wrong.round + 1;
  t.suffix = {9};
  t.sampling = Greedy(1);
  auto rec = h.Run(t);
  ASSERT_TRUE(rec->missing.has_value());
  ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
  EXPECT_EQ(h.engine().Load().cache.lookups_stale, 1);
  // The committed state is untouched: the real next turn still hits.
  auto next = c.Turn(RandomTokens(rng, 2), 2);
  ASSERT_TRUE(next->result.has_value());
  EXPECT_GT(next->start.cached_tokens, 0);
}

TEST(EngineTest, CancelMidStreamKeepsTheCommittedStateAndRetryEqualsUncancelledRun) {
  Harness h, reference;
  Conversation c(&h, "c"), ref(&reference, "c");
  std::mt19937 rng(3);
  const auto first = RandomTokens(rng, 9);
  ASSERT_TRUE(c.Turn(first, 4)->result.has_value());
  ASSERT_TRUE(ref.Turn(first, 4)->result.has_value());
  const RoundStamp before = *c.stamp();

  // Second turn, cancelled after two tokens.
  const auto second = RandomTokens(rng, 6);
  TurnSpec t;
  t.key = c.key();
  t.request_id = "to-cancel";
  t.expected = before;
  t.new_round = before.round + 1;
  t.suffix.assign(c.ledger().begin() + before.num_tokens, c.ledger().end());
  t.suffix.insert(t.suffix.end(), second.begin(), second.end());
  t.sampling = Greedy(50);
  auto rec = std::make_shared<Recorder>();
  Engine* engine = &h.engine();
  rec->on_tokens = [engine](Recorder& r) {
    if (r.tokens.size() == 2) engine->Cancel("to-cancel");
  };
  ASSERT_TRUE(h.engine().Submit(t, rec).ok());
  rec->done.WaitForNotification();
  EXPECT_EQ(rec->failed.code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(rec->result.has_value());
  ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
  const auto snap = h.cache().Inspect(c.key());
  ASSERT_TRUE(snap.has_value());
  EXPECT_EQ(snap->round, before);

  auto retry = c.Turn(second, 8);
  auto expected = ref.Turn(second, 8);
  ASSERT_TRUE(retry->result.has_value());
  EXPECT_EQ(retry->tokens, expected->tokens);
  EXPECT_GT(retry->start.cached_tokens, 0);
}

TEST(EngineTest, InterleavedConversationsUnderMemoryPressureEvictButStayExact) {
  // 20 conversations whose committed states together need far more blocks
  // and slots than the worker has.
  Harness small({.kv_blocks = 48, .mamba_slots = 6, .block_size = 4, .max_batch_tokens = 24});
  Harness big({.kv_blocks = 4096, .mamba_slots = 64, .block_size = 4, .max_batch_tokens = 24});
  std::vector<Conversation> a, b;
  for (int i = 0; i < 20; ++i) {
    a.emplace_back(&small, absl::StrCat("c", i));
    b.emplace_back(&big, absl::StrCat("c", i), "");
  }
  std::mt19937 rng(4);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 20; ++i) {
      const auto suffix = RandomTokens(rng, 2 + (i * 7 + round * 3) % 9);
      auto ra = a[i].Turn(suffix, 3);
      auto rb = b[i].Turn(suffix, 3, /*use_cache=*/false);
      ASSERT_TRUE(ra->result.has_value())
          << "conv " << i << " round " << round << ": " << ra->failed;
      ASSERT_TRUE(rb->result.has_value());
      EXPECT_EQ(ra->tokens, rb->tokens) << "conv " << i << " round " << round;
    }
  }
  ASSERT_TRUE(small.engine().AwaitIdle(absl::Seconds(10)));
  const auto load = small.engine().Load();
  EXPECT_GT(load.cache.conversations_evicted, 0);
  int resends = 0;
  for (const auto& c : a) resends += c.resends();
  EXPECT_GT(resends, 0);  // evicted states were recomputed from the history
  EXPECT_EQ(load.cache.kv_blocks_active, 0);
  EXPECT_EQ(load.cache.mamba_slots_active, 0);
}

TEST(EngineTest, ConcurrentLongTurnsArePreemptedAndRecomputedExactly) {
  // Each turn needs ~ (40 + 12) / 4 = 13 blocks; 20 blocks cannot hold two.
  Harness h({.kv_blocks = 20, .mamba_slots = 4, .block_size = 4, .max_batch_tokens = 8});
  Harness ref({.kv_blocks = 512, .mamba_slots = 8, .block_size = 4, .max_batch_tokens = 8});
  std::mt19937 rng(5);
  std::vector<std::vector<int32_t>> prompts = {RandomTokens(rng, 40), RandomTokens(rng, 40)};
  std::vector<std::shared_ptr<Recorder>> recs;
  // Held in the first turn's first step until the second is queued, so the
  // two always overlap (a descheduled test thread would otherwise let the
  // first finish alone).
  h.gate().BlockAt(1);
  for (int i = 0; i < 2; ++i) {
    TurnSpec t;
    t.key = {"", absl::StrCat("long", i)};
    t.request_id = t.key.conversation_id;
    t.suffix = prompts[i];
    t.sampling = Greedy(12);
    recs.push_back(h.Start(t));
    if (i == 0) h.gate().AwaitBlocked();
  }
  h.gate().Release();
  for (int i = 0; i < 2; ++i) {
    recs[i]->done.WaitForNotification();
    ASSERT_TRUE(recs[i]->result.has_value()) << recs[i]->failed;
    TurnSpec t;
    t.key = {"", absl::StrCat("long", i)};
    t.request_id = "ref";
    t.suffix = prompts[i];
    t.sampling = Greedy(12);
    EXPECT_EQ(recs[i]->tokens, ref.Run(t)->tokens);
    EXPECT_EQ(recs[i]->started, 1);
  }
  // Preempted turns went back to the queue and left it again: the count
  // max_waiting bounds is back to zero.
  ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
  EXPECT_EQ(h.engine().Load().num_waiting, 0);
  // Without a preemption the model computes 2 x (40 + 11) tokens; a
  // recompute adds at least a prompt.
  EXPECT_GT(h.model().tokens_computed(), 2 * (40 + 12)) << "the scenario must preempt";
}

TEST(EngineTest, StopsOnEosStopTokenStopStringAndMaxTokens) {
  Harness h;
  std::mt19937 rng(6);
  const auto prompt = RandomTokens(rng, 5);
  TurnSpec base;
  base.key = {"", "probe"};
  base.request_id = "probe";
  base.suffix = prompt;
  base.sampling = Greedy(6);
  auto probe = h.Run(base);
  ASSERT_EQ(probe->tokens.size(), 6u);
  EXPECT_EQ(probe->result->finish_reason, "length");

  // The same context yields the same tokens: stop on the third one.
  TurnSpec by_id = base;
  by_id.key.conversation_id = "by_id";
  by_id.request_id = "by_id";
  by_id.sampling.stop_token_ids = {probe->tokens[2]};
  auto r = h.Run(by_id);
  EXPECT_EQ(r->result->finish_reason, "stop");
  EXPECT_EQ(r->tokens.back(), probe->tokens[2]);
  EXPECT_LE(r->tokens.size(), 3u);

  TurnSpec by_string = base;
  by_string.key.conversation_id = "by_string";
  by_string.request_id = "by_string";
  const std::string text = testing::Text(std::span(probe->tokens).subspan(1, 2));
  by_string.sampling.stop_strings = {text};
  r = h.Run(by_string);
  EXPECT_EQ(r->result->finish_reason, "stop");
  EXPECT_LE(r->tokens.size(), 3u);
}

TEST(EngineTest, TopLogprobsComeWithEverySampledTokenGreedyFirst) {
  Harness h;
  std::mt19937 rng(7);
  TurnSpec spec;
  spec.key = {"", "top"};
  spec.request_id = "top";
  spec.suffix = RandomTokens(rng, 5);
  spec.sampling = Greedy(5);
  spec.sampling.logprobs = true;
  spec.sampling.top_logprobs = 3;
  auto r = h.Run(spec);
  ASSERT_TRUE(r->result.has_value()) << r->failed;
  ASSERT_EQ(r->tokens.size(), 5u);
  ASSERT_EQ(r->top.size(), 5u * 3u);
  for (size_t i = 0; i < r->tokens.size(); ++i) {
    // Greedy samples the most likely token, with the same log-probability.
    EXPECT_EQ(r->top[i * 3].token, r->tokens[i]) << i;
    EXPECT_FLOAT_EQ(r->top[i * 3].logprob, r->logprobs[i]) << i;
    EXPECT_GE(r->top[i * 3].logprob, r->top[i * 3 + 1].logprob) << i;
    EXPECT_GE(r->top[i * 3 + 1].logprob, r->top[i * 3 + 2].logprob) << i;
  }
  // Without top_logprobs: none.
  spec.key.conversation_id = spec.request_id = "plain";
  spec.sampling.top_logprobs = 0;
  r = h.Run(spec);
  EXPECT_EQ(r->logprobs.size(), 5u);
  EXPECT_TRUE(r->top.empty());
}

TEST(EngineTest, MalformedTurnsAreRejectedAndChangeNothing) {
  Harness h({.max_model_len = 64});
  TurnSpec ok;
  ok.key = {"", "x"};
  ok.request_id = "x";
  ok.suffix = {5, 6};
  ok.sampling = Greedy(2);

  TurnSpec bad = ok;
  bad.suffix = {5, kVocab};
  EXPECT_EQ(h.engine().Submit(bad, std::make_shared<Recorder>()).code(),
            absl::StatusCode::kInvalidArgument);
  bad = ok;
  bad.suffix.clear();
  EXPECT_EQ(h.engine().Submit(bad, std::make_shared<Recorder>()).code(),
            absl::StatusCode::kInvalidArgument);
  bad = ok;
  bad.suffix.assign(64, 7);
  EXPECT_EQ(h.engine().Submit(bad, std::make_shared<Recorder>()).code(),
            absl::StatusCode::kResourceExhausted);
  bad = ok;
  bad.sampling.sampler.top_p = 0.0f;
  EXPECT_EQ(h.engine().Submit(bad, std::make_shared<Recorder>()).code(),
            absl::StatusCode::kInvalidArgument);
  bad = ok;
  bad.sampling.max_tokens = 0;
  EXPECT_EQ(h.engine().Submit(bad, std::make_shared<Recorder>()).code(),
            absl::StatusCode::kInvalidArgument);
  bad = ok;
  bad.sampling.sampler.temperature = -1.0f;
  EXPECT_EQ(h.engine().Submit(bad, std::make_shared<Recorder>()).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
  EXPECT_EQ(h.engine().Load().cache.conversations, 0);
  EXPECT_EQ(h.model().forward_calls(), 0);

  // Still serving.
  auto rec = h.Run(ok);
  EXPECT_TRUE(rec->result.has_value());
}

TEST(EngineTest, SecondConcurrentTurnOfAConversationIsAborted) {
  Harness h;
  TurnSpec t;
  t.key = {"", "busy"};
  t.request_id = "first";
  t.suffix = {5, 6, 7};
  t.sampling = Greedy(4);
  // The model holds the engine thread in the first turn's first step (the
  // observer must not block) until the second turn was refused.
  h.gate().BlockAt(1);
  auto first = h.Start(t);
  h.gate().AwaitBlocked();
  TurnSpec again = t;
  again.request_id = "second";
  EXPECT_EQ(h.engine().Submit(again, std::make_shared<Recorder>()).code(),
            absl::StatusCode::kAborted);
  h.gate().Release();
  first->done.WaitForNotification();
  EXPECT_TRUE(first->result.has_value());
}

TEST(EngineTest, SaltsAreSeparateConversations) {
  Harness h;
  Conversation a(&h, "same", "tenant-a"), b(&h, "same", "tenant-b");
  std::mt19937 rng(7);
  const auto p = RandomTokens(rng, 6);
  ASSERT_TRUE(a.Turn(p, 2)->result.has_value());
  auto rb = b.Turn(RandomTokens(rng, 6), 2);
  ASSERT_TRUE(rb->result.has_value());
  EXPECT_EQ(rb->start.cached_tokens, 0);
  ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
  EXPECT_EQ(h.engine().Load().cache.conversations, 2);
}

TEST(EngineTest, DrainRefusesNewTurnsAndLetsRunningOnesFinish) {
  Harness h;
  TurnSpec t;
  t.key = {"", "d"};
  t.request_id = "d";
  t.suffix = {5, 6, 7};
  t.sampling = Greedy(5);
  // The turn is mid-step (held in the model, not in its observer) when the
  // engine drains.
  h.gate().BlockAt(1);
  auto rec = h.Start(t);
  h.gate().AwaitBlocked();
  h.engine().Drain();
  TurnSpec late = t;
  late.key.conversation_id = "late";
  late.request_id = "late";
  EXPECT_EQ(h.engine().Submit(late, std::make_shared<Recorder>()).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(h.engine().Load().draining);
  h.gate().Release();
  EXPECT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
  rec->done.WaitForNotification();
  ASSERT_TRUE(rec->result.has_value());
  EXPECT_EQ(rec->tokens.size(), 5u);
}

TEST(EngineTest, ForgetFreesTheCommittedState) {
  Harness h;
  Conversation c(&h, "r");
  std::mt19937 rng(8);
  ASSERT_TRUE(c.Turn(RandomTokens(rng, 5), 2)->result.has_value());
  EXPECT_TRUE(h.ForgetAndWait(c.key()));
  EXPECT_FALSE(h.ForgetAndWait(c.key()));
  auto next = c.Turn(RandomTokens(rng, 3), 2);  // missing -> resent with history
  ASSERT_TRUE(next->result.has_value());
  EXPECT_EQ(c.resends(), 1);
}

TEST(EngineTest, StopFailsQueuedAndRunningTurns) {
  Harness h;
  TurnSpec t;
  t.key = {"", "s"};
  t.request_id = "s";
  t.suffix = {5};
  t.sampling = Greedy(1000);
  // The model holds the engine thread in the running turn's first step until
  // Stop() has begun; a second turn waits in the queue meanwhile.
  h.gate().BlockAt(1);
  auto running = h.Start(t);
  h.gate().AwaitBlocked();
  TurnSpec queued_turn = t;
  queued_turn.key.conversation_id = "q";
  queued_turn.request_id = "q";
  auto queued = std::make_shared<Recorder>();
  ASSERT_TRUE(h.engine().Submit(queued_turn, queued).ok());

  std::thread stopper([&] { h.engine().Stop(); });
  // Submit answers ABORTED (conversation busy) until Stop() has begun, then
  // UNAVAILABLE; no timing assumption.
  while (h.engine().Submit(t, std::make_shared<Recorder>()).code() == absl::StatusCode::kAborted) {
    std::this_thread::yield();
  }
  h.gate().Release();
  stopper.join();
  running->done.WaitForNotification();
  queued->done.WaitForNotification();
  EXPECT_EQ(running->failed.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(queued->failed.code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(running->tokens.size(), 1000u);
  EXPECT_EQ(h.engine().Submit(t, std::make_shared<Recorder>()).code(),
            absl::StatusCode::kUnavailable);
}

TEST(EngineTest, MaxWaitingTurnsWaitAndTheNextIsRefusedWithoutATrace) {
  Harness h({.max_waiting = 3});
  // The first turn holds the engine thread in its first step: from then on
  // nothing leaves the queue until the gate opens.
  h.gate().BlockAt(1);
  auto running = h.Start(FreshTurn("running"));
  h.gate().AwaitBlocked();

  std::vector<std::shared_ptr<Recorder>> waiting;
  for (int i = 0; i < 3; ++i) waiting.push_back(h.Start(FreshTurn(absl::StrCat("w", i))));
  EXPECT_EQ(h.engine().Load().num_waiting, 3);
  EXPECT_EQ(h.engine().Load().max_waiting, 3);

  auto refused = std::make_shared<Recorder>();
  const absl::Status busy = h.engine().Submit(FreshTurn("over"), refused);
  EXPECT_EQ(busy.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(busy.message(), "worker busy: 3 turns waiting (--max_waiting 3)");
  // Nothing was recorded for it: the same conversation and request id are
  // refused for load again, not as a turn already in progress (ABORTED).
  EXPECT_EQ(h.engine().Submit(FreshTurn("over"), refused).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(h.engine().Load().num_waiting, 3);
  EXPECT_EQ(h.metrics().rejected("queue_full"), 2);

  // Waiting turns that end without running (cancelled, state missing) give
  // their place back as well as admitted ones.
  h.engine().Cancel("w1");
  h.gate().Release();
  running->done.WaitForNotification();
  for (auto& w : waiting) w->done.WaitForNotification();
  EXPECT_TRUE(running->result.has_value());
  EXPECT_TRUE(waiting[0]->result.has_value());
  EXPECT_EQ(waiting[1]->failed.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(waiting[2]->result.has_value());
  EXPECT_EQ(refused->started, 0);
  EXPECT_FALSE(refused->done.HasBeenNotified());
  ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
  EXPECT_EQ(h.engine().Load().num_waiting, 0);
  // The refused turn touched no cache state: only the three that ran committed.
  EXPECT_EQ(h.engine().Load().cache.conversations, 3);
  EXPECT_FALSE(h.cache().Inspect({"", "over"}).has_value());

  // With places free again, the refused turn is accepted and runs fresh.
  auto retried = h.Run(FreshTurn("over"));
  ASSERT_TRUE(retried->result.has_value()) << retried->failed;
  EXPECT_EQ(retried->start.cached_tokens, 0);
}

TEST(EngineTest, RacingSubmitsNeverOvershootMaxWaiting) {
  constexpr int kMaxWaiting = 5;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 8;
  for (int round = 0; round < 10; ++round) {
    Harness h({.max_waiting = kMaxWaiting});
    h.gate().BlockAt(1);
    auto running = h.Start(FreshTurn("running"));
    h.gate().AwaitBlocked();

    absl::Notification go;
    std::vector<std::vector<absl::StatusCode>> codes(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        go.WaitForNotification();
        for (int k = 0; k < kPerThread; ++k) {
          codes[i].push_back(
              h.engine()
                  .Submit(FreshTurn(absl::StrCat("t", i, "-", k)), std::make_shared<Recorder>())
                  .code());
        }
      });
    }
    go.Notify();
    for (auto& t : threads) t.join();
    int accepted = 0, refused = 0;
    for (const auto& per_thread : codes) {
      for (const absl::StatusCode c : per_thread) {
        if (c == absl::StatusCode::kOk) ++accepted;
        if (c == absl::StatusCode::kResourceExhausted) ++refused;
      }
    }
    EXPECT_EQ(accepted, kMaxWaiting) << "round " << round;
    EXPECT_EQ(refused, kThreads * kPerThread - kMaxWaiting) << "round " << round;
    EXPECT_EQ(h.engine().Load().num_waiting, kMaxWaiting);
    EXPECT_EQ(h.metrics().rejected("queue_full"), kThreads * kPerThread - kMaxWaiting);
    h.gate().Release();
    ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(30)));
    EXPECT_EQ(h.engine().Load().num_waiting, 0);
    EXPECT_EQ(h.engine().Load().cache.conversations, kMaxWaiting + 1);
  }
}

TEST(EngineTest, ZeroMaxWaitingQueuesWithoutBound) {
  Harness h({.max_waiting = 0});
  h.gate().BlockAt(1);
  auto running = h.Start(FreshTurn("running"));
  h.gate().AwaitBlocked();
  constexpr int kTurns = 300;  // more than the default bound of 256
  std::vector<std::shared_ptr<Recorder>> recs;
  for (int i = 0; i < kTurns; ++i) recs.push_back(h.Start(FreshTurn(absl::StrCat("q", i), 1)));
  EXPECT_EQ(h.engine().Load().num_waiting, kTurns);
  EXPECT_EQ(h.engine().Load().max_waiting, 0);
  h.gate().Release();
  for (auto& r : recs) {
    r->done.WaitForNotification();
    EXPECT_TRUE(r->result.has_value()) << r->failed;
  }
  EXPECT_EQ(h.metrics().rejected("queue_full"), 0);
}

TEST(EngineTest, NegativeMaxWaitingIsRejected) {
  auto memory =
      runtime::testing::MakeHostCacheMemory(
          {.num_layers = 1, .num_blocks = 4, .block_size = 4, .num_kv_heads = 1, .head_dim = 1},
          {.num_layers = 1,
           .num_slots = 2,
           .conv_dim = 1,
           .conv_width = 2,
           .num_heads = 1,
           .head_dim = 1,
           .state_size = 1},
          1)
          .value();
  auto cache = cache::ConversationCache::Create({.memory = memory.get()}).value();
  FakeModel model(memory.get(), kVocab);
  EXPECT_EQ(
      Engine::Create({.model = &model, .cache = cache.get(), .max_waiting = -1}).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(EngineTest, DrainedEngineRefusesTurnsAsDrainingAndCountsThem) {
  Harness h;
  h.engine().Drain();
  const absl::Status s = h.engine().Submit(FreshTurn("late"), std::make_shared<Recorder>());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("draining"), absl::string_view::npos) << s;
  EXPECT_EQ(h.metrics().rejected("draining"), 1);
  EXPECT_EQ(h.metrics().rejected("queue_full"), 0);
}

TEST(EngineTest, ForgetReturnsAtOnceAndAnswersFromTheEngineThreadAfterItsStep) {
  Harness h;
  Conversation c(&h, "rel");
  std::mt19937 rng(9);
  ASSERT_TRUE(c.Turn(RandomTokens(rng, 5), 2)->result.has_value());
  ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
  // Hold the engine thread inside the next step (another conversation's).
  h.gate().BlockAt(h.model().forward_calls() + 1);
  auto busy = h.Start(FreshTurn("busy"));
  h.gate().AwaitBlocked();

  absl::Notification returned, answered;
  std::thread::id answered_on;
  bool released = false;
  // On its own thread so that a Forget that waits for the engine fails the
  // test instead of deadlocking it (the gate opens only below).
  std::thread caller([&] {
    h.engine().Forget(c.key(), [&](bool r) {
      released = r;
      answered_on = std::this_thread::get_id();
      answered.Notify();
    });
    returned.Notify();
  });
  const std::thread::id caller_id = caller.get_id();
  EXPECT_TRUE(returned.WaitForNotificationWithTimeout(absl::Seconds(30)))
      << "Forget waited for the engine thread";
  EXPECT_FALSE(answered.HasBeenNotified()) << "answered before the engine could run it";
  h.gate().Release();
  caller.join();
  answered.WaitForNotification();
  EXPECT_TRUE(released);
  EXPECT_NE(answered_on, caller_id);
  EXPECT_NE(answered_on, std::this_thread::get_id());
  busy->done.WaitForNotification();
  EXPECT_FALSE(h.ForgetAndWait(c.key()));
}

TEST(EngineTest, ForgetOnAStoppedEngineAnswersFalseAtOnce) {
  Harness h;
  Conversation c(&h, "gone");
  std::mt19937 rng(10);
  ASSERT_TRUE(c.Turn(RandomTokens(rng, 4), 2)->result.has_value());
  h.engine().Stop();
  std::optional<bool> released;
  h.engine().Forget(c.key(), [&](bool r) { released = r; });
  ASSERT_TRUE(released.has_value()) << "done must run on the calling thread once stopped";
  EXPECT_FALSE(*released);
}

}  // namespace
}  // namespace hc::engine
