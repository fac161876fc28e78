// CompleteRequest.fork_from (chat.proto): a new conversation that starts from
// another's first committed messages, exactly as committed; the source is
// only read. Against in-process fake workers, as chat_service_test.cc.
#include <string>

#include "gtest/gtest.h"
#include "tests/unit/router/service/router_harness.h"

namespace hc::router {
namespace {

namespace v1 = hybridcache::v1;
using testing::RouterHarness;
using testing::TurnResult;

v1::CompleteRequest ForkTurn(const std::string& id, const std::string& source, uint32_t n,
                             const std::string& text) {
  v1::CompleteRequest req = RouterHarness::UserTurn(id, text);
  req.mutable_fork_from()->set_conversation_id(source);
  req.mutable_fork_from()->set_num_messages(n);
  return req;
}

TEST(ForkTest, ForkFromTheFirstRoundRepeatsTheSecondTurnExactlyAndLeavesTheSource) {
  RouterHarness h(1);
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("src", "one")).status.ok());
  TurnResult second = h.Complete(RouterHarness::UserTurn("src", "two"));
  ASSERT_TRUE(second.status.ok());
  const ConversationRecord src = h.ledger().Get(LedgerKey{"", "src"}).value();
  ASSERT_EQ(src.messages.size(), 4u);

  TurnResult fork = h.Complete(ForkTurn("f", "src", 2, "two"));
  ASSERT_TRUE(fork.status.ok()) << fork.status.error_message();
  EXPECT_EQ(fork.tokens, second.tokens);
  EXPECT_EQ(fork.started()->round(), 1u);
  // The worker recomputed the copied history as a first turn.
  const v1::ExecuteRequest req = h.worker(0).requests().back();
  EXPECT_TRUE(req.has_history());
  EXPECT_EQ(static_cast<uint32_t>(req.history_token_ids_size()), src.messages[1].end);

  const ConversationRecord f = h.ledger().Get(LedgerKey{"", "f"}).value();
  EXPECT_EQ(f.round, 1u);
  EXPECT_EQ(f.tokens, src.tokens);
  EXPECT_EQ(f.messages, src.messages);
  // The source is as it was; the fork goes on by itself (sticky, cached).
  const ConversationRecord after = h.ledger().Get(LedgerKey{"", "src"}).value();
  EXPECT_EQ(after.round, src.round);
  EXPECT_EQ(after.tokens, src.tokens);
  TurnResult next = h.Complete(RouterHarness::UserTurn("f", "three"));
  ASSERT_TRUE(next.status.ok());
  EXPECT_GT(next.started()->cached_tokens(), 0u);
}

TEST(ForkTest, ForkAfterAUserMessageContinuesFromThatMessage) {
  RouterHarness h(1);
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("src", "one")).status.ok());
  v1::CompleteRequest req = ForkTurn("f", "src", 1, "");
  req.mutable_messages(0)->set_role("assistant");
  req.mutable_messages(0)->set_content("a reply the client wrote");
  TurnResult r = h.Complete(req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  const ConversationRecord f = h.ledger().Get(LedgerKey{"", "f"}).value();
  ASSERT_EQ(f.messages.size(), 3u);
  EXPECT_EQ(f.messages[0].text, "one");
  EXPECT_EQ(f.messages[1].text, "a reply the client wrote");
  EXPECT_EQ(f.messages[2].role, Role::kAssistant);
}

TEST(ForkTest, BadForksAreRefusedAndCreateNothing) {
  RouterHarness h(1);
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("src", "one")).status.ok());
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("taken", "one")).status.ok());
  struct Case {
    v1::CompleteRequest req;
    grpc::StatusCode code;
  };
  const Case cases[] = {
      {ForkTurn("f1", "missing", 1, "x"), grpc::StatusCode::NOT_FOUND},
      {ForkTurn("f2", "src", 3, "x"), grpc::StatusCode::INVALID_ARGUMENT},
      {ForkTurn("f3", "src", 0, "x"), grpc::StatusCode::INVALID_ARGUMENT},
      {ForkTurn("f4", "f4", 1, "x"), grpc::StatusCode::INVALID_ARGUMENT},
      {ForkTurn("f5", "bad id!", 1, "x"), grpc::StatusCode::INVALID_ARGUMENT},
      {ForkTurn("taken", "src", 1, "x"), grpc::StatusCode::FAILED_PRECONDITION},
  };
  for (const Case& c : cases) {
    TurnResult r = h.Complete(c.req);
    EXPECT_EQ(r.status.error_code(), c.code) << c.req.ShortDebugString();
    if (c.req.conversation_id() != "taken") {
      EXPECT_TRUE(
          absl::IsNotFound(h.ledger().Get(LedgerKey{"", c.req.conversation_id()}).status()));
    }
  }
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "taken"})->round, 1u);
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "src"})->round, 1u);
}

TEST(ForkTest, AnotherSaltsConversationIsNotASource) {
  RouterHarness h(1);
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("src", "one", "salt-a")).status.ok());
  v1::CompleteRequest req = ForkTurn("f", "src", 1, "x");
  req.set_cache_salt("salt-b");
  EXPECT_EQ(h.Complete(req).status.error_code(), grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace hc::router
