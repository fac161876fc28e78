// Stop strings end to end through the router (fake workers that match stop
// strings as a worker does): no chunk ever carries a stop string, the ledger
// and GetConversation keep only the text before it, and the next turn builds
// on a worker state that is a prefix of the ledger.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "router/service/chat_service.h"
#include "tests/unit/router/service/router_harness.h"

namespace hc::router {
namespace {

namespace v1 = hybridcache::v1;
using testing::RouterHarness;
using testing::TurnResult;

constexpr char kEmoji[] = "\xF0\x9F\x98\x80";

struct Fixture {
  Fixture() : h(1, ChatServiceOptions{}, testing::FakeWorkerOptions{.reply_letters = 12}) {}
  // The fake model's reply to a first turn "hello", and its letters.
  std::vector<uint32_t> Reply() {
    auto prompt =
        ByteTextCodec().EncodeTurn(std::vector<TurnMessage>{{Role::kUser, "hello"}}, TurnContext{});
    return h.worker(0).Reply(prompt->tokens);
  }
  std::string Letters() {
    const std::vector<uint32_t> r = Reply();
    return std::string(r.begin(), r.begin() + 12);
  }
  TurnResult Run(const std::string& stop) {
    v1::CompleteRequest req = RouterHarness::UserTurn("c", "hello");
    req.mutable_sampling()->add_stop(stop);
    return h.Complete(req);
  }
  std::string CommittedReply() {
    v1::GetConversationRequest get;
    get.set_conversation_id("c");
    v1::Conversation conv;
    grpc::ClientContext ctx;
    EXPECT_TRUE(h.stub().GetConversation(&ctx, get, &conv).ok());
    EXPECT_EQ(conv.messages_size(), 2);
    return conv.messages_size() == 2 ? conv.messages(1).content() : "";
  }
  RouterHarness h;
};

void ExpectNoChunkContains(const TurnResult& r, const std::string& stop) {
  for (const auto& e : r.events) {
    if (e.has_chunk()) {
      EXPECT_EQ(e.chunk().text().find(stop), std::string::npos) << e.chunk().text();
      EXPECT_TRUE(IsValidUtf8(e.chunk().text()));
    }
  }
}

TEST(StopStringsTest, AStopStringIsNeverStreamedNorCommitted) {
  Fixture f;
  const std::string letters = f.Letters();
  const std::string stop = letters.substr(4, 3);
  ASSERT_EQ(letters.find(stop), 4u) << letters;
  const TurnResult r = f.Run(stop);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.completed()->finish_reason(), "stop");
  ExpectNoChunkContains(r, stop);
  EXPECT_EQ(r.text, letters.substr(0, 4));
  const std::vector<uint32_t> reply = f.Reply();
  EXPECT_EQ(r.tokens, std::vector<uint32_t>(reply.begin(), reply.begin() + 4));
  EXPECT_EQ(r.completed()->usage().completion_tokens(), 7u);  // sampled, stop string included
  EXPECT_EQ(f.CommittedReply(), letters.substr(0, 4));

  // The ledger ends with the reply's tokens. The stop string began before the
  // last sampled token of a first turn: the worker keeps no state...
  const auto rec = f.h.ledger().Get(LedgerKey{"", "c"}).value();
  EXPECT_EQ(std::vector<uint32_t>(rec.tokens.end() - 4, rec.tokens.end()), r.tokens);
  EXPECT_EQ(rec.worker.num_tokens, 0u);
  // ... so the next turn sends the history instead of expecting a state.
  const TurnResult next = f.h.Complete(RouterHarness::UserTurn("c", "again"));
  ASSERT_TRUE(next.status.ok()) << next.status.error_message();
  const v1::ExecuteRequest sent = f.h.worker(0).requests().back();
  EXPECT_FALSE(sent.has_expected());
  EXPECT_TRUE(sent.has_history());
  EXPECT_EQ(f.h.worker(0).requests().size(), 2u);  // no StateMissing round trip
}

TEST(StopStringsTest, AStopStringInTheLastTokenKeepsTheStateAndTheNextTurnIsSticky) {
  Fixture f;
  const std::string letters = f.Letters();
  size_t i = 1;
  while (i < letters.size() && letters.find(letters[i]) != i) ++i;
  ASSERT_LT(i, letters.size()) << letters;
  const std::string stop(1, letters[i]);
  const TurnResult r = f.Run(stop);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.text, letters.substr(0, i));
  EXPECT_EQ(f.CommittedReply(), letters.substr(0, i));
  const auto rec = f.h.ledger().Get(LedgerKey{"", "c"}).value();
  // Everything but the stop string's token is the worker's state.
  EXPECT_EQ(rec.worker.num_tokens, rec.tokens.size());
  const TurnResult next = f.h.Complete(RouterHarness::UserTurn("c", "again"));
  ASSERT_TRUE(next.status.ok()) << next.status.error_message();
  EXPECT_EQ(next.started()->cached_tokens(), rec.worker.num_tokens);
}

TEST(StopStringsTest, AMultibyteStopStringAcrossTokensEndsTheReplyBeforeIt) {
  Fixture f;
  const TurnResult r = f.Run(kEmoji);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ExpectNoChunkContains(r, kEmoji);
  EXPECT_EQ(r.text, f.Letters());
  EXPECT_EQ(f.CommittedReply(), f.Letters());
}

TEST(StopStringsTest, TextHeldForAStopStringThatNeverCompletesIsReleased) {
  Fixture f;
  const std::string letters = f.Letters();
  const TurnResult r = f.Run(letters.substr(10, 2) + "#");
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.text, letters + kEmoji);
  EXPECT_EQ(r.tokens, f.Reply());
  EXPECT_EQ(f.CommittedReply(), letters + kEmoji);
}

}  // namespace
}  // namespace hc::router
