// The turn's state machine (router/service/turn.cc) against in-process fake
// workers: lease heartbeats, a lost lease, the router's admission bound,
// worker refusals retried before the first token, and a soak of many short
// turns from many clients whose ledger must equal what the clients were told.
#include <atomic>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "router/ledger/memory_ledger.h"
#include "tests/unit/router/service/observed_ledger.h"
#include "tests/unit/router/service/router_harness.h"

namespace hc::router {
namespace {

namespace v1 = hybridcache::v1;
using testing::HarnessOptions;
using testing::ObservedLedger;
using testing::RouterHarness;
using testing::TurnResult;

// A test clock the test moves by hand.
class FakeClock {
 public:
  absl::Time Now() const { return absl::FromUnixNanos(ns_.load()); }
  void Advance(absl::Duration d) { ns_.fetch_add(absl::ToInt64Nanoseconds(d)); }
  Clock AsClock() {
    return [this] { return Now(); };
  }

 private:
  std::atomic<int64_t> ns_{absl::ToUnixNanos(absl::FromUnixSeconds(1'700'000'000))};
};

TEST(TurnTest, TurnLongerThanTheLeaseTtlKeepsItsLeaseByRenewingIt) {
  FakeClock clock;
  auto ledger = std::make_unique<ObservedLedger>(clock.AsClock());
  ObservedLedger* observed = ledger.get();
  HarnessOptions o;
  o.service.lease_ttl = absl::Milliseconds(300);  // renewed every 100 ms
  o.ledger = std::move(ledger);
  RouterHarness h(1, std::move(o));
  h.worker(0).BlockNext(/*tokens_before=*/1);
  TurnResult first;
  std::thread t([&] { first = h.Complete(RouterHarness::UserTurn("c", "a long answer")); });
  h.worker(0).entered().WaitForNotificationWithTimeout(absl::Seconds(30));

  // The ledger's clock runs well past the TTL while the turn streams; each
  // step waits for a renewal made at the new time.
  for (int i = 0; i < 4; ++i) {
    clock.Advance(absl::Milliseconds(200));
    observed->AwaitRenewalAtOrAfter(clock.Now());
  }
  TurnResult second = h.Complete(RouterHarness::UserTurn("c", "meanwhile"));
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::ABORTED) << second.status.error_message();

  h.worker(0).Unblock();
  t.join();
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_EQ(first.completed()->committed_round(), 1u);
  auto rec = h.ledger().Get(LedgerKey{"", "c"});
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->round, 1u);
  EXPECT_EQ(rec->messages.front().text, "a long answer");
}

TEST(TurnTest, LostLeaseAbortsTheTurnCancelsTheWorkerAndCommitsNothing) {
  auto ledger = std::make_unique<ObservedLedger>(Clock([] { return absl::Now(); }));
  ObservedLedger* observed = ledger.get();
  observed->RefuseRenewals();
  HarnessOptions o;
  o.service.lease_ttl = absl::Milliseconds(60);
  o.ledger = std::move(ledger);
  RouterHarness h(1, std::move(o));
  h.worker(0).BlockNext(/*tokens_before=*/1);
  TurnResult r = h.Complete(RouterHarness::UserTurn("c", "hello"));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::ABORTED) << r.status.error_message();
  EXPECT_NE(r.status.error_message().find("lease"), std::string::npos) << r.status.error_message();
  EXPECT_TRUE(h.worker(0).AwaitCancel(absl::Seconds(30)));
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "c"}).status().code(), absl::StatusCode::kNotFound);
}

TEST(TurnTest, RouterAdmissionBoundRefusesTheTurnPastItAndAdmitsAgainAfter) {
  ChatServiceOptions so;
  so.max_inflight_turns = 1;
  RouterHarness h(1, so);
  h.worker(0).BlockNext(/*tokens_before=*/0);
  TurnResult first;
  std::thread t([&] { first = h.Complete(RouterHarness::UserTurn("a", "one")); });
  h.worker(0).entered().WaitForNotificationWithTimeout(absl::Seconds(30));

  TurnResult refused = h.Complete(RouterHarness::UserTurn("b", "two"));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.status.error_message().find("--max_inflight_turns"), std::string::npos)
      << refused.status.error_message();
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "b"}).status().code(), absl::StatusCode::kNotFound);

  h.worker(0).Unblock();
  t.join();
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  TurnResult after = h.Complete(RouterHarness::UserTurn("b", "two"));
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
}

TEST(TurnTest, WorkerQueueFullIsRetriedBeforeTheFirstToken) {
  RouterHarness h(1);
  h.worker(0).FailNext(grpc::StatusCode::RESOURCE_EXHAUSTED, 1);
  TurnResult r = h.Complete(RouterHarness::UserTurn("c", "hi"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(h.worker(0).requests().size(), 2u);
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "c"})->round, 1u);
}

TEST(TurnTest, WorkerQueueFullOnEveryAttemptReachesTheClientAndChangesNothing) {
  ChatServiceOptions so;
  so.max_attempts = 3;
  RouterHarness h(1, so);
  h.worker(0).FailNext(grpc::StatusCode::RESOURCE_EXHAUSTED, 3);
  TurnResult r = h.Complete(RouterHarness::UserTurn("c", "hi"));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(h.worker(0).requests().size(), 3u);
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "c"}).status().code(), absl::StatusCode::kNotFound);
  // The lease was given back: the next turn runs.
  EXPECT_TRUE(h.Complete(RouterHarness::UserTurn("c", "hi")).status.ok());
}

// ByteTextCodec whose tokenizing blocks (until cancelled) for messages that
// contain "block", and records what it saw. Blocking is only safe for texts
// long enough to go to the work pool.
class BlockingCodec final : public TextCodec {
 public:
  std::string Decode(std::span<const uint32_t> ids) const override { return inner_.Decode(ids); }
  std::string TokenBytes(std::span<const uint32_t> ids) const override {
    return inner_.TokenBytes(ids);
  }
  std::vector<uint32_t> EncodeBytes(std::string_view bytes) const override {
    return inner_.EncodeBytes(bytes);
  }
  std::unique_ptr<StreamDecoder> NewStreamDecoder() const override {
    return inner_.NewStreamDecoder();
  }
  uint32_t vocab_size() const override { return inner_.vocab_size(); }
  uint32_t eos_token_id() const override { return inner_.eos_token_id(); }
  size_t max_token_bytes() const override { return inner_.max_token_bytes(); }

  absl::Notification entered;
  std::atomic<int> calls{0};
  std::atomic<bool> saw_cancel{false};

 private:
  absl::StatusOr<EncodedTurn> DoEncodeTurn(std::span<const TurnMessage> messages,
                                           const TurnContext& context,
                                           const std::atomic<bool>* cancel) const override {
    const_cast<BlockingCodec*>(this)->calls++;
    if (!messages.empty() && messages[0].content.find("block") != std::string::npos) {
      auto* self = const_cast<BlockingCodec*>(this);
      if (!self->entered.HasBeenNotified()) self->entered.Notify();
      // A tokenizer checks its cancel flag between words; this one waits for
      // it to turn true (the turn notifies the flag's waiters when it sets it).
      if (cancel == nullptr) return absl::InternalError("no cancel flag");
      cancel->wait(false);
      self->saw_cancel = true;
      return absl::CancelledError("tokenization cancelled");
    }
    {
      absl::MutexLock lock(&mu_);
      histories_.push_back(context.history);
    }
    return inner_.EncodeTurn(messages, context, cancel);
  }
  ByteTextCodec inner_;

 public:
  // The TurnContext::history of every encoded turn, in order.
  std::vector<std::vector<TurnMessage>> histories() const {
    absl::MutexLock lock(&mu_);
    return histories_;
  }

 private:
  mutable absl::Mutex mu_;
  mutable std::vector<std::vector<TurnMessage>> histories_ ABSL_GUARDED_BY(mu_);
};

// ByteTextCodec that refuses to continue a conversation, as HfTextCodec does
// for a chat template that renders the history differently (not prefix-stable).
class HistoryRefusingCodec final : public TextCodec {
 public:
  std::string Decode(std::span<const uint32_t> ids) const override { return inner_.Decode(ids); }
  std::string TokenBytes(std::span<const uint32_t> ids) const override {
    return inner_.TokenBytes(ids);
  }
  std::vector<uint32_t> EncodeBytes(std::string_view bytes) const override {
    return inner_.EncodeBytes(bytes);
  }
  std::unique_ptr<StreamDecoder> NewStreamDecoder() const override {
    return inner_.NewStreamDecoder();
  }
  uint32_t vocab_size() const override { return inner_.vocab_size(); }
  uint32_t eos_token_id() const override { return inner_.eos_token_id(); }
  size_t max_token_bytes() const override { return inner_.max_token_bytes(); }

 private:
  absl::StatusOr<EncodedTurn> DoEncodeTurn(std::span<const TurnMessage> messages,
                                           const TurnContext& context,
                                           const std::atomic<bool>* cancel) const override {
    if (!context.history.empty()) {
      return absl::FailedPreconditionError("the chat template renders the history differently");
    }
    return inner_.EncodeTurn(messages, context, cancel);
  }
  ByteTextCodec inner_;
};

TEST(TurnTest, TurnTheTemplateCannotContinueIsFailedPreconditionAndCommitsNothing) {
  HarnessOptions o;
  o.codec = std::make_unique<HistoryRefusingCodec>();
  RouterHarness h(1, std::move(o));
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("c", "hello")).status.ok());
  const auto before = h.ledger().Get(LedgerKey{"", "c"});
  ASSERT_TRUE(before.ok());
  const TurnResult refused = h.Complete(RouterHarness::UserTurn("c", "again"));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(refused.status.error_message(), "the chat template renders the history differently");
  const auto after = h.ledger().Get(LedgerKey{"", "c"});
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->round, before->round);
  EXPECT_EQ(after->tokens, before->tokens);
  EXPECT_EQ(after->messages, before->messages);
  // The lease was released (a held one would answer ABORTED).
  EXPECT_EQ(h.Complete(RouterHarness::UserTurn("c", "once more")).status.error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST(TurnTest, ContinuingTurnIsEncodedWithTheCommittedMessagesAsHistory) {
  // A chat template renders the whole conversation, so the codec needs the
  // committed messages (roles and texts, the reply as decoded) on every turn.
  auto codec = std::make_unique<BlockingCodec>();
  BlockingCodec* recording = codec.get();
  HarnessOptions o;
  o.codec = std::move(codec);
  RouterHarness h(1, std::move(o));
  const TurnResult first = h.Complete(RouterHarness::UserTurn("conv", "hello"));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  const TurnResult second = h.Complete(RouterHarness::UserTurn("conv", "again"));
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  const auto histories = recording->histories();
  ASSERT_EQ(histories.size(), 2u);
  EXPECT_TRUE(histories[0].empty());
  ASSERT_EQ(histories[1].size(), 2u);
  EXPECT_EQ(histories[1][0].role, Role::kUser);
  EXPECT_EQ(histories[1][0].content, "hello");
  EXPECT_EQ(histories[1][1].role, Role::kAssistant);
  EXPECT_EQ(histories[1][1].content, ByteTextCodec().Decode(first.tokens));
}

TEST(TurnTest, ClientCancelWhileTokenizingStopsTheTokenizerAndReleasesTheLease) {
  auto codec = std::make_unique<BlockingCodec>();
  BlockingCodec* blocking = codec.get();
  HarnessOptions o;
  o.codec = std::move(codec);
  o.service.max_model_len = 1 << 20;
  RouterHarness h(1, std::move(o));
  grpc::ClientContext ctx;
  // Long enough to be tokenized on the work pool (short texts are encoded
  // inline, in microseconds).
  const std::string text = "please block " + std::string(32 << 10, 'x');
  auto reader = h.stub().Complete(&ctx, RouterHarness::UserTurn("c", text));
  ASSERT_TRUE(blocking->entered.WaitForNotificationWithTimeout(absl::Seconds(30)));
  // Another conversation is served while one turn is stuck in its tokenizer.
  EXPECT_TRUE(h.Complete(RouterHarness::UserTurn("d", "fine")).status.ok());
  ctx.TryCancel();
  v1::CompleteEvent e;
  while (reader->Read(&e)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The lease came back: the next turn of "c" runs (after the cancelled one
  // has released it; the client's status can arrive first).
  TurnResult next;
  for (int i = 0; i < 1000; ++i) {
    next = h.Complete(RouterHarness::UserTurn("c", "fine now"));
    if (next.status.error_code() != grpc::StatusCode::ABORTED) break;
  }
  EXPECT_TRUE(next.status.ok()) << next.status.error_message();
  EXPECT_TRUE(blocking->saw_cancel.load());
  EXPECT_EQ(h.worker(0).requests().size(), 2u);  // "d" and the second "c": nothing of the first
}

TEST(TurnTest, TextFarPastTheContextLimitIsRefusedBeforeAnyTokenizing) {
  auto codec = std::make_unique<BlockingCodec>();
  BlockingCodec* counting = codec.get();
  HarnessOptions o;
  o.codec = std::move(codec);
  o.service.max_model_len = 1000;
  RouterHarness h(1, std::move(o));
  // ByteTextCodec: one token per byte, so 2,000 bytes make >= 2,000 tokens.
  TurnResult r = h.Complete(RouterHarness::UserTurn("c", std::string(2000, 'x')));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(r.status.error_message().find("at least 2000 tokens"), std::string::npos)
      << r.status.error_message();
  EXPECT_EQ(counting->calls.load(), 0);
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "c"}).status().code(), absl::StatusCode::kNotFound);
  // Text that may fit is tokenized and checked exactly.
  TurnResult fits = h.Complete(RouterHarness::UserTurn("c", std::string(900, 'x')));
  EXPECT_TRUE(fits.status.ok()) << fits.status.error_message();
  EXPECT_EQ(counting->calls.load(), 1);
}

// Many clients, many short turns: the router survives, every turn is OK (or
// ABORTED where clients share a conversation), and the ledger holds exactly
// the acknowledged turns, in round order.
TEST(TurnTest, SoakOfShortTurnsKeepsTheLedgerEqualToWhatClientsWereTold) {
  constexpr int kThreads = 8;
  constexpr int kTurnsPerThread = 120;
  constexpr int kOwnPerThread = 4;
  constexpr int kShared = 3;
  testing::FakeWorkerOptions wo;
  wo.reply_letters = 2;
  RouterHarness h(2, ChatServiceOptions{}, wo);

  struct Told {
    std::string user, reply;
  };
  absl::Mutex mu;
  std::map<std::string, std::map<uint64_t, Told>> told;  // conversation -> round -> turn
  std::atomic<int> ok{0}, aborted{0}, other{0};
  std::string first_other;

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kTurnsPerThread; ++i) {
        const bool shared = i % 5 == 0;
        const std::string id = shared ? absl::StrCat("shared-", i % kShared)
                                      : absl::StrCat("own-", t, "-", i % kOwnPerThread);
        const std::string text = absl::StrCat("t", t, "i", i);
        TurnResult r = h.Complete(RouterHarness::UserTurn(id, text));
        if (r.status.ok() && r.completed() != nullptr) {
          ++ok;
          absl::MutexLock lock(&mu);
          told[id][r.completed()->committed_round()] = Told{text, r.text};
        } else if (shared && r.status.error_code() == grpc::StatusCode::ABORTED) {
          ++aborted;
        } else {
          absl::MutexLock lock(&mu);
          if (other++ == 0)
            first_other = absl::StrCat(r.status.error_code(), " ", r.status.error_message());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(other.load(), 0) << "first unexpected outcome: " << first_other;
  EXPECT_EQ(ok.load() + aborted.load(), kThreads * kTurnsPerThread);

  for (const auto& [id, rounds] : told) {
    auto rec = h.ledger().Get(LedgerKey{"", id});
    ASSERT_TRUE(rec.ok()) << id << ": " << rec.status();
    ASSERT_EQ(rec->round, rounds.size()) << id;
    ASSERT_EQ(rec->messages.size(), 2 * rounds.size()) << id;
    uint64_t round = 1;
    for (const auto& [r, turn] : rounds) {
      ASSERT_EQ(r, round) << id;
      EXPECT_EQ(rec->messages[2 * (r - 1)].text, turn.user) << id << " round " << r;
      EXPECT_EQ(rec->messages[2 * (r - 1) + 1].text, turn.reply) << id << " round " << r;
      ++round;
    }
  }
  EXPECT_EQ(*h.ledger().CountConversations(), told.size());
}

}  // namespace
}  // namespace hc::router
