// ChatService end to end against in-process fake workers (real gRPC on
// loopback): sticky routing, failover, StateMissing, retries, cancellation,
// deadlines, leases, validation and the ledger it leaves behind.
#include "router/service/chat_service.h"

#include <memory>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/unit/router/service/observed_ledger.h"
#include "tests/unit/router/service/router_harness.h"

namespace hc::router {
namespace {

namespace v1 = hybridcache::v1;
using testing::HarnessOptions;
using testing::RouterHarness;
using testing::TurnResult;

constexpr char kEmoji[] = "\xF0\x9F\x98\x80";

// Turn index of the worker a conversation's state is on.
int WorkerIndex(RouterHarness& h, const std::string& id) {
  for (int i = 0; i < 2; ++i)
    if (h.worker(i).address() == id) return i;
  return -1;
}

TEST(ChatServiceTest, FirstTurnStreamsTheReplyAndCommitsRoundOne) {
  RouterHarness h(2);
  TurnResult r = h.Complete(RouterHarness::UserTurn("c1", "hello"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_NE(r.started(), nullptr);
  ASSERT_NE(r.completed(), nullptr);
  EXPECT_EQ(r.started()->round(), 1u);
  EXPECT_EQ(r.started()->cached_tokens(), 0u);
  EXPECT_EQ(r.completed()->committed_round(), 1u);
  EXPECT_EQ(r.completed()->finish_reason(), "stop");
  EXPECT_TRUE(r.events.front().has_started());
  EXPECT_TRUE(r.events.back().has_completed());

  // The fake model's reply to exactly the rendered prompt.
  auto ledger = h.ledger().Get(LedgerKey{"", "c1"});
  ASSERT_TRUE(ledger.ok());
  ByteTextCodec codec;
  auto prompt = codec.EncodeTurn(std::vector<TurnMessage>{{Role::kUser, "hello"}}, TurnContext{});
  const std::vector<uint32_t> reply = h.worker(0).Reply(prompt->tokens);
  EXPECT_EQ(r.tokens, reply);
  EXPECT_EQ(r.started()->prompt_tokens(), prompt->tokens.size());
  EXPECT_EQ(r.completed()->usage().completion_tokens(), reply.size());
  // The emoji arrives one byte per batch; the text never splits it.
  EXPECT_NE(r.text.find(kEmoji), std::string::npos);
  for (const auto& e : r.events) {
    if (e.has_chunk()) {
      EXPECT_TRUE(IsValidUtf8(e.chunk().text())) << e.chunk().text();
    }
  }
  // The ledger holds prompt + every generated token, the worker's length.
  std::vector<uint32_t> all = prompt->tokens;
  all.insert(all.end(), reply.begin(), reply.end());
  EXPECT_EQ(ledger->tokens, all);
  EXPECT_EQ(ledger->worker.num_tokens, all.size() - 1);
  ASSERT_EQ(ledger->messages.size(), 2u);
  EXPECT_EQ(ledger->messages[1].role, Role::kAssistant);
  EXPECT_EQ(ledger->messages[1].text, r.text);
}

TEST(ChatServiceTest, NextTurnIsStickyAndSendsOnlyTheUncachedSuffix) {
  RouterHarness h(2);
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("c", "one")).status.ok());
  auto before = h.ledger().Get(LedgerKey{"", "c"}).value();
  const int w = WorkerIndex(h, before.worker.worker_id);
  ASSERT_GE(w, 0);
  TurnResult r = h.Complete(RouterHarness::UserTurn("c", "two"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.started()->worker_id(), before.worker.worker_id);
  EXPECT_EQ(r.started()->cached_tokens(), before.worker.num_tokens);
  EXPECT_EQ(r.completed()->committed_round(), 2u);

  const v1::ExecuteRequest req = h.worker(w).requests().back();
  ASSERT_TRUE(req.has_expected());
  EXPECT_EQ(req.expected().round(), 1u);
  EXPECT_EQ(req.expected().num_tokens(), before.worker.num_tokens);
  EXPECT_FALSE(req.has_history());
  // The uncomputed last sampled token, then the new suffix.
  EXPECT_EQ(req.suffix_token_ids(0), before.tokens.back());
  EXPECT_EQ(h.Counter("hc_router_routing_decisions_total", "decision", "sticky"), 1);
  EXPECT_EQ(h.Counter("hc_router_routing_decisions_total", "decision", "placed"), 1);
  EXPECT_EQ(h.worker(1 - w).requests().size(), 0u);
}

TEST(ChatServiceTest, UnhealthyWorkerFailsOverWithTheFullHistoryAndTheSameReply) {
  RouterHarness h(2);
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("c", "one")).status.ok());
  auto before = h.ledger().Get(LedgerKey{"", "c"}).value();
  const int w = WorkerIndex(h, before.worker.worker_id);
  h.worker(w).SetLoadFails(true);
  h.pool().Refresh();
  TurnResult r = h.Complete(RouterHarness::UserTurn("c", "two"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.started()->worker_id(), h.worker(1 - w).address());
  EXPECT_EQ(r.started()->cached_tokens(), 0u);
  const v1::ExecuteRequest req = h.worker(1 - w).requests().back();
  EXPECT_FALSE(req.has_expected());
  EXPECT_TRUE(req.has_history());
  EXPECT_EQ(std::vector<uint32_t>(req.history_token_ids().begin(), req.history_token_ids().end()),
            before.tokens);
  // Same context, same reply: a cache miss changes speed, never the answer.
  std::vector<uint32_t> context = before.tokens;
  context.insert(context.end(), req.suffix_token_ids().begin(), req.suffix_token_ids().end());
  EXPECT_EQ(r.tokens, h.worker(w).Reply(context));
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "c"})->worker.worker_id, h.worker(1 - w).address());
  EXPECT_EQ(h.Counter("hc_router_routing_decisions_total", "decision", "failover"), 1);
}

TEST(ChatServiceTest, StateMissingIsResentWithTheHistoryToTheSameWorker) {
  RouterHarness h(2);
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("c", "one")).status.ok());
  auto before = h.ledger().Get(LedgerKey{"", "c"}).value();
  const int w = WorkerIndex(h, before.worker.worker_id);
  h.worker(w).ForgetAll();  // e.g. evicted or restarted
  TurnResult r = h.Complete(RouterHarness::UserTurn("c", "two"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.started()->cached_tokens(), 0u);
  const auto reqs = h.worker(w).requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_TRUE(reqs[1].has_expected());
  EXPECT_FALSE(reqs[1].has_history());
  EXPECT_TRUE(reqs[2].has_history());
  EXPECT_EQ(reqs[2].history_token_ids_size(), static_cast<int>(before.tokens.size()));
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "c"})->round, 2u);
}

TEST(ChatServiceTest, UnavailableWorkerIsRetriedOnAnotherBeforeAnyToken) {
  RouterHarness h(2);
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("c", "one")).status.ok());
  auto before = h.ledger().Get(LedgerKey{"", "c"}).value();
  const int w = WorkerIndex(h, before.worker.worker_id);
  h.worker(w).Shutdown();  // the pool has not noticed yet: routes sticky, gets UNAVAILABLE
  TurnResult r = h.Complete(RouterHarness::UserTurn("c", "two"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.started()->worker_id(), h.worker(1 - w).address());
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "c"})->round, 2u);
  EXPECT_EQ(h.Counter("hc_router_routing_decisions_total", "decision", "sticky"), 1);
  EXPECT_EQ(h.Counter("hc_router_routing_decisions_total", "decision", "failover"), 1);
  EXPECT_EQ(h.pool().counts().unhealthy, 1);
}

TEST(ChatServiceTest, NoWorkerUpIsUnavailableAndChangesNothing) {
  RouterHarness h(1);
  h.worker(0).Shutdown();
  h.pool().Refresh();  // unhealthy: the turn still tries it (the least recently failed), in vain
  TurnResult r = h.Complete(RouterHarness::UserTurn("c", "x"));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "c"}).status().code(), absl::StatusCode::kNotFound);
}

TEST(ChatServiceTest, ConcurrentTurnIsAbortedAndTheFirstStillCommits) {
  RouterHarness h(1);
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("c", "one")).status.ok());
  h.worker(0).BlockNext();
  TurnResult first;
  std::thread t([&] { first = h.Complete(RouterHarness::UserTurn("c", "two")); });
  h.worker(0).entered().WaitForNotification();
  TurnResult second = h.Complete(RouterHarness::UserTurn("c", "three"));
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_TRUE(second.events.empty());
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "c"})->round, 1u);
  h.worker(0).Unblock();
  t.join();
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "c"})->round, 2u);
  EXPECT_EQ(h.worker(0).requests().size(), 2u);  // the aborted turn never reached it
}

TEST(ChatServiceTest, ClientCancelPropagatesToTheWorkerAndLeavesTheLedgerUnchanged) {
  RouterHarness h(1);
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("c", "one")).status.ok());
  const auto before = h.ledger().Get(LedgerKey{"", "c"}).value();
  h.worker(0).BlockNext(/*tokens_before=*/2);
  grpc::ClientContext ctx;
  auto reader = h.stub().Complete(&ctx, RouterHarness::UserTurn("c", "two"));
  v1::CompleteEvent e;
  ASSERT_TRUE(reader->Read(&e));  // TurnStarted (sent with the first token)
  EXPECT_TRUE(e.has_started());
  h.worker(0).entered().WaitForNotification();
  ctx.TryCancel();
  while (reader->Read(&e)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The router cancels its worker call; the worker observes it.
  EXPECT_TRUE(h.worker(0).AwaitCancel(absl::Seconds(30)));
  const auto after = h.ledger().Get(LedgerKey{"", "c"}).value();
  EXPECT_EQ(after.round, before.round);
  EXPECT_EQ(after.tokens, before.tokens);
  // The lease was released: the next turn runs.
  EXPECT_TRUE(h.Complete(RouterHarness::UserTurn("c", "again")).status.ok());
}

TEST(ChatServiceTest, DeadlinePropagatesToTheWorker) {
  auto ledger = std::make_unique<testing::ObservedLedger>([] { return absl::Now(); });
  testing::ObservedLedger* observed = ledger.get();
  HarnessOptions o;
  o.ledger = std::move(ledger);
  RouterHarness h(1, std::move(o));
  h.worker(0).BlockNext();
  const auto deadline = absl::Now() + absl::Milliseconds(300);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(deadline));
  auto reader = h.stub().Complete(&ctx, RouterHarness::UserTurn("c", "slow"));
  v1::CompleteEvent e;
  while (reader->Read(&e)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  const absl::Time worker_deadline = absl::FromChrono(h.worker(0).last_deadline());
  EXPECT_LE(absl::AbsDuration(worker_deadline - deadline), absl::Milliseconds(50));
  // The client's deadline fires on its side first; the router's own (equal,
  // measured from when it received the call) then ends the worker call and
  // the turn, which releases the lease moments later. The worker stays
  // blocked until then: unblocked earlier, it could still finish and commit
  // the turn before the router's deadline.
  ASSERT_TRUE(observed->AwaitReleases(1, absl::Seconds(30))) << "the lease was never released";
  h.worker(0).Unblock();
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "c"}).status().code(), absl::StatusCode::kNotFound);
  TurnResult next = h.Complete(RouterHarness::UserTurn("c", "fast"));
  EXPECT_TRUE(next.status.ok()) << next.status.error_message();
}

TEST(ChatServiceTest, ExpectedRoundMismatchIsFailedPrecondition) {
  RouterHarness h(1);
  auto req = RouterHarness::UserTurn("c", "one");
  req.set_expected_round(0);
  ASSERT_TRUE(h.Complete(req).status.ok());
  req.set_expected_round(0);
  EXPECT_EQ(h.Complete(req).status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  req.set_expected_round(1);
  EXPECT_TRUE(h.Complete(req).status.ok());
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "c"})->round, 2u);
}

TEST(ChatServiceTest, MaxTokensEndsWithLengthAndAnUnterminatedReplyIsClosedNextTurn) {
  RouterHarness h(1);
  auto req = RouterHarness::UserTurn("c", "one");
  req.mutable_sampling()->set_max_tokens(2);
  TurnResult r = h.Complete(req);
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.completed()->finish_reason(), "length");
  EXPECT_EQ(r.tokens.size(), 2u);
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("c", "two")).status.ok());
  const auto req2 = h.worker(0).requests().back();
  // Uncomputed last token, then <|end|> closing the cut reply, then the message.
  ASSERT_GE(req2.suffix_token_ids_size(), 2);
  EXPECT_EQ(req2.suffix_token_ids(1), ByteTextCodec::kEnd);
}

TEST(ChatServiceTest, RawSuffixTokensAreAppendedVerbatim) {
  RouterHarness h(1);
  v1::CompleteRequest req;
  req.set_conversation_id("raw");
  for (uint32_t t : {72u, 105u, 257u}) req.add_suffix_token_ids(t);
  TurnResult r = h.Complete(req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  auto rec = h.ledger().Get(LedgerKey{"", "raw"}).value();
  EXPECT_EQ(std::vector<uint32_t>(rec.tokens.begin(), rec.tokens.begin() + 3),
            (std::vector<uint32_t>{72, 105, 257}));
  EXPECT_EQ(rec.messages[0].text, "Hi");
}

TEST(ChatServiceTest, SaltsSeparateConversationsWithTheSameId) {
  RouterHarness h(1);
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("c", "one", "tenant-a")).status.ok());
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("c", "other", "tenant-b")).status.ok());
  EXPECT_EQ(h.ledger().Get(LedgerKey{"tenant-a", "c"})->messages[0].text, "one");
  EXPECT_EQ(h.ledger().Get(LedgerKey{"tenant-b", "c"})->messages[0].text, "other");
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "c"}).status().code(), absl::StatusCode::kNotFound);
}

TEST(ChatServiceTest, GetAndDeleteConversation) {
  RouterHarness h(1);
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("c", "hello", "s")).status.ok());
  v1::GetConversationRequest get;
  get.set_conversation_id("c");
  get.set_cache_salt("s");
  v1::Conversation conv;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(h.stub().GetConversation(&ctx, get, &conv).ok());
  }
  EXPECT_EQ(conv.committed_round(), 1u);
  ASSERT_EQ(conv.messages_size(), 2);
  EXPECT_EQ(conv.messages(0).role(), "user");
  EXPECT_EQ(conv.messages(0).content(), "hello");
  EXPECT_EQ(conv.messages(1).role(), "assistant");
  EXPECT_NE(conv.messages(1).content().find(kEmoji), std::string::npos);
  EXPECT_EQ(conv.worker_id(), h.worker(0).address());
  EXPECT_EQ(conv.num_tokens(), h.ledger().Get(LedgerKey{"s", "c"})->tokens.size());

  v1::DeleteConversationRequest del;
  del.set_conversation_id("c");
  del.set_cache_salt("s");
  v1::DeleteConversationResponse resp;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(h.stub().DeleteConversation(&ctx, del, &resp).ok());
  }
  EXPECT_EQ(h.worker(0).released(), std::vector<std::string>{"c"});
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(h.stub().GetConversation(&ctx, get, &conv).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(h.stub().DeleteConversation(&ctx, del, &resp).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
}

// The usage a turn reports is committed with its round: GetConversation
// returns each round's, equal to what that round's TurnCompleted said.
TEST(ChatServiceTest, GetConversationReturnsEachRoundsUsageAsItsTurnReportedIt) {
  RouterHarness h(1);
  std::vector<v1::Usage> reported;
  for (const char* text : {"hello", "again"}) {
    TurnResult r = h.Complete(RouterHarness::UserTurn("c", text, "s"));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    ASSERT_NE(r.completed(), nullptr);
    reported.push_back(r.completed()->usage());
  }
  EXPECT_GT(reported[1].cached_tokens(), 0u);
  v1::GetConversationRequest get;
  get.set_conversation_id("c");
  get.set_cache_salt("s");
  v1::Conversation conv;
  grpc::ClientContext ctx;
  ASSERT_TRUE(h.stub().GetConversation(&ctx, get, &conv).ok());
  ASSERT_EQ(conv.rounds_size(), 2);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(conv.rounds(i).has_usage()) << i;
    EXPECT_EQ(conv.rounds(i).usage().SerializeAsString(), reported[i].SerializeAsString()) << i;
  }
}

struct BadRequest {
  std::string name;
  std::function<void(v1::CompleteRequest&)> mutate;
  grpc::StatusCode code;
};

// (Invalid UTF-8 cannot cross the wire: protobuf refuses to parse it before
// the service runs; validation_test covers the router's own check.)
TEST(ChatServiceTest, EveryValidationFailureHasItsCodeAndLeavesTheLedgerUnchanged) {
  testing::FakeWorkerOptions wo;
  wo.max_model_len = 64;
  RouterHarness h(1, {}, wo);
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("c", "hi")).status.ok());
  const auto before = h.ledger().Get(LedgerKey{"", "c"}).value();
  const size_t requests_before = h.worker(0).requests().size();
  const std::vector<BadRequest> cases = {
      {"empty id", [](auto& r) { r.set_conversation_id(""); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"long id", [](auto& r) { r.set_conversation_id(std::string(129, 'a')); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"bad id char", [](auto& r) { r.set_conversation_id("c/1"); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"long salt", [](auto& r) { r.set_cache_salt(std::string(1025, 's')); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"no input", [](auto& r) { r.clear_messages(); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"both inputs", [](auto& r) { r.add_suffix_token_ids(1); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"bad role", [](auto& r) { r.mutable_messages(0)->set_role("robot"); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"token out of vocab",
       [](auto& r) {
         r.clear_messages();
         r.add_suffix_token_ids(259);
       },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"negative temperature", [](auto& r) { r.mutable_sampling()->set_temperature(-0.1f); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"nan temperature", [](auto& r) { r.mutable_sampling()->set_temperature(std::nanf("")); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"top_p zero", [](auto& r) { r.mutable_sampling()->set_top_p(0.0f); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"top_p above one", [](auto& r) { r.mutable_sampling()->set_top_p(1.5f); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"max_tokens zero", [](auto& r) { r.mutable_sampling()->set_max_tokens(0); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"stop token out of vocab", [](auto& r) { r.mutable_sampling()->add_stop_token_ids(1000); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"context too long",
       [](auto& r) { r.mutable_messages(0)->set_content(std::string(60, 'x')); },
       grpc::StatusCode::RESOURCE_EXHAUSTED},
      {"stale expected_round", [](auto& r) { r.set_expected_round(0); },
       grpc::StatusCode::FAILED_PRECONDITION},
  };
  for (const BadRequest& c : cases) {
    auto req = RouterHarness::UserTurn("c", "next");
    c.mutate(req);
    TurnResult r = h.Complete(req);
    EXPECT_EQ(r.status.error_code(), c.code) << c.name << ": " << r.status.error_message();
    EXPECT_FALSE(r.status.error_message().empty()) << c.name;
    EXPECT_TRUE(r.events.empty()) << c.name;
  }
  const auto after = h.ledger().Get(LedgerKey{"", "c"}).value();
  EXPECT_EQ(after.round, before.round);
  EXPECT_EQ(after.tokens, before.tokens);
  EXPECT_EQ(h.worker(0).requests().size(), requests_before);
  // Every refused turn released its lease.
  EXPECT_TRUE(h.Complete(RouterHarness::UserTurn("c", "ok")).status.ok());
  EXPECT_EQ(h.Counter("hc_router_requests_total", "code", "INVALID_ARGUMENT"), 14);
}

TEST(ChatServiceTest, ManyConcurrentTurnsOnOneConversationLetExactlyOneThroughAtATime) {
  RouterHarness h(2);
  // Whichever worker gets the turn notifies; the other stays idle.
  auto entered = std::make_shared<absl::Notification>();
  h.worker(0).BlockNext(0, entered);
  h.worker(1).BlockNext(0, entered);
  TurnResult first;
  std::thread t([&] { first = h.Complete(RouterHarness::UserTurn("c", "one")); });
  EXPECT_TRUE(entered->WaitForNotificationWithTimeout(absl::Seconds(30)))
      << "the first turn never reached a worker";
  std::vector<std::thread> others;
  std::atomic<int> aborted{0};
  for (int i = 0; i < 6; ++i) {
    others.emplace_back([&] {
      if (h.Complete(RouterHarness::UserTurn("c", "x")).status.error_code() ==
          grpc::StatusCode::ABORTED)
        ++aborted;
    });
  }
  for (auto& o : others) o.join();
  EXPECT_EQ(aborted.load(), 6);
  h.worker(0).Unblock();
  h.worker(1).Unblock();
  t.join();
  EXPECT_TRUE(first.status.ok());
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "c"})->round, 1u);
}

TEST(ChatServiceTest, ManyConversationsInParallelAllCommitConsistently) {
  RouterHarness h(2);
  constexpr int kThreads = 8, kTurns = 6;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kTurns; ++i) {
        TurnResult r = h.Complete(
            RouterHarness::UserTurn("p" + std::to_string(t), "turn " + std::to_string(i)));
        if (!r.status.ok() || r.completed() == nullptr ||
            r.completed()->committed_round() != static_cast<uint64_t>(i + 1)) {
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  ByteTextCodec codec;
  for (int t = 0; t < kThreads; ++t) {
    auto rec = h.ledger().Get(LedgerKey{"", "p" + std::to_string(t)});
    ASSERT_TRUE(rec.ok());
    EXPECT_EQ(rec->round, static_cast<uint64_t>(kTurns));
    // Replaying the ledger through the fake model reproduces every reply:
    // each turn's tokens are exactly what the model saw.
    ASSERT_EQ(rec->messages.size(), 2u * kTurns);
    for (int i = 0; i < kTurns; ++i) {
      const LedgerMessage& reply = rec->messages[2 * i + 1];
      const std::vector<uint32_t> context(rec->tokens.begin(), rec->tokens.begin() + reply.begin);
      const std::vector<uint32_t> generated(rec->tokens.begin() + reply.begin,
                                            rec->tokens.begin() + reply.end);
      EXPECT_EQ(generated, h.worker(0).Reply(context)) << "conversation " << t << " turn " << i;
    }
  }
  EXPECT_EQ(h.Counter("hc_router_requests_total", "code", "OK"), kThreads * kTurns);
}

}  // namespace
}  // namespace hc::router
