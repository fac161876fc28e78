// Conversation turns over the HTTP front door (TurnExchange::RunConversation)
// against an in-process router: which ChatService calls a turn costs, and
// that a conversation changed behind the router's back is still planned
// against the ledger.
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "router/http/openai_server.h"
#include "tests/unit/router/http/http_test_client.h"
#include "tests/unit/router/service/router_harness.h"

namespace hc::router::http {
namespace {

namespace v1 = hybridcache::v1;
using Json = nlohmann::json;

class ConversationTurnTest : public ::testing::Test {
 protected:
  ConversationTurnTest() : h_(1) {
    OpenAiServerOptions o;
    o.model_name = "m";
    auto api = OpenAiServer::Start(o, h_.server().InProcessChannel(), &codec_, &h_.pool());
    HC_CHECK(api.ok()) << api.status();
    api_ = *std::move(api);
    client_ = std::make_unique<testing::HttpTestClient>(api_->port());
  }

  // One non-streamed turn of conversation `id`; the reply's JSON.
  Json Turn(const std::string& id, const Json& messages) {
    const auto r =
        client_->Post("/v1/chat/completions", Json{{"model", "m"}, {"messages", messages}}.dump(),
                      "X-Conversation-Id: " + id + "\r\n");
    EXPECT_EQ(r.status, 200) << r.body;
    return Json::parse(r.body);
  }

  // ChatService calls so far (every final status).
  double Calls() {
    double n = 0;
    for (int c = 0; c < 17; ++c) {
      n += h_.Counter("hc_router_requests_total", "code",
                      absl::StatusCodeToString(static_cast<absl::StatusCode>(c)));
    }
    return n;
  }

  v1::Conversation Ledger(const std::string& id) {
    grpc::ClientContext ctx;
    v1::GetConversationRequest req;
    req.set_conversation_id(id);
    v1::Conversation c;
    EXPECT_TRUE(h_.stub().GetConversation(&ctx, req, &c).ok()) << id;
    return c;
  }

  static Json Msg(const std::string& role, const std::string& content) {
    return {{"role", role}, {"content", content}};
  }
  static std::string Text(const Json& reply) {
    return reply["choices"][0]["message"]["content"].get<std::string>();
  }

  router::testing::RouterHarness h_;
  ByteTextCodec codec_;
  std::unique_ptr<OpenAiServer> api_;
  std::unique_ptr<testing::HttpTestClient> client_;
};

TEST_F(ConversationTurnTest, TurnsThatExtendWhatThisRouterCommittedCostOneCallEach) {
  Json history = Json::array({Msg("user", "one")});
  const double before = Calls();
  for (int turn = 0; turn < 3; ++turn) {
    const Json r = Turn("conv", history);
    if (turn > 0) {
      EXPECT_GT(r["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 0) << turn;
    }
    history.push_back(Msg("assistant", Text(r)));
    history.push_back(Msg("user", "next " + std::to_string(turn)));
  }
  // Three Completes: no GetConversation before any of them.
  EXPECT_EQ(Calls() - before, 3);
  EXPECT_EQ(Ledger("conv").committed_round(), 3u);
}

TEST_F(ConversationTurnTest, AConversationMovedBehindTheRoutersBackIsPlannedOnTheLedger) {
  const Json first = Turn("moved", Json::array({Msg("user", "one")}));
  // Another client appends a round the router does not know about.
  ASSERT_TRUE(h_.Complete(router::testing::RouterHarness::UserTurn("moved", "other")).status.ok());
  const v1::Conversation moved = Ledger("moved");
  ASSERT_EQ(moved.committed_round(), 2u);
  // The client's history extends what the router committed, not the ledger:
  // the turn forks from the shared prefix and leaves the conversation as is.
  const Json r =
      Turn("moved",
           Json::array({Msg("user", "one"), Msg("assistant", Text(first)), Msg("user", "two")}));
  EXPECT_GT(r["usage"]["prompt_tokens"].get<int>(), 0);
  const v1::Conversation after = Ledger("moved");
  EXPECT_EQ(after.committed_round(), 2u);
  EXPECT_EQ(after.messages_size(), moved.messages_size());
}

TEST_F(ConversationTurnTest, AConversationThisRouterDoesNotKnowIsExtendedFromTheLedger) {
  const auto grpc_turn = h_.Complete(router::testing::RouterHarness::UserTurn("known", "one"));
  ASSERT_TRUE(grpc_turn.status.ok());
  const Json r =
      Turn("known",
           Json::array({Msg("user", "one"), Msg("assistant", grpc_turn.text), Msg("user", "two")}));
  EXPECT_GT(r["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 0);
  EXPECT_EQ(Ledger("known").committed_round(), 2u);
}

}  // namespace
}  // namespace hc::router::http
