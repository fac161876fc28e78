// The HTTP API's pure parts: request parsing and validation, turn planning
// against the committed messages, response ids, and the status mapping.
#include "router/http/openai_types.h"

#include "common/grpc_status.h"
#include "common/retry_delay.h"
#include "gtest/gtest.h"
#include "router/http/responses_api.h"

namespace hc::router::http {
namespace {

namespace v1 = hybridcache::v1;

v1::ChatMessage Msg(const std::string& role, const std::string& content) {
  v1::ChatMessage m;
  m.set_role(role);
  m.set_content(content);
  return m;
}

google::protobuf::RepeatedPtrField<v1::ChatMessage> Committed(
    std::initializer_list<v1::ChatMessage> ms) {
  google::protobuf::RepeatedPtrField<v1::ChatMessage> out;
  for (const auto& m : ms) *out.Add() = m;
  return out;
}

TEST(PlanTurnTest, AnExtensionSendsOnlyTheNewMessages) {
  auto committed = Committed({Msg("user", "a"), Msg("assistant", "b")});
  TurnPlan p = PlanTurn(committed, {Msg("user", "a"), Msg("assistant", "b"), Msg("user", "c")});
  EXPECT_EQ(p.kind, TurnPlan::Kind::kExtend);
  EXPECT_EQ(p.suffix_begin, 2u);
}

TEST(PlanTurnTest, AnEditForksFromTheLongestEqualPrefix) {
  auto committed =
      Committed({Msg("user", "a"), Msg("assistant", "b"), Msg("user", "c"), Msg("assistant", "d")});
  TurnPlan p = PlanTurn(committed, {Msg("user", "a"), Msg("assistant", "b"), Msg("user", "C")});
  EXPECT_EQ(p.kind, TurnPlan::Kind::kFork);
  EXPECT_EQ(p.keep, 2u);
  EXPECT_EQ(p.suffix_begin, 2u);
  // A different role is a different message too.
  p = PlanTurn(committed, {Msg("user", "a"), Msg("user", "b")});
  EXPECT_EQ(p.kind, TurnPlan::Kind::kFork);
  EXPECT_EQ(p.keep, 1u);
}

TEST(PlanTurnTest, ARegenerateResendsTheLastMessageOnAFork) {
  auto committed =
      Committed({Msg("user", "a"), Msg("assistant", "b"), Msg("user", "c"), Msg("assistant", "d")});
  TurnPlan p = PlanTurn(committed, {Msg("user", "a"), Msg("assistant", "b"), Msg("user", "c")});
  EXPECT_EQ(p.kind, TurnPlan::Kind::kFork);
  EXPECT_EQ(p.keep, 2u);
  EXPECT_EQ(p.suffix_begin, 2u);
}

TEST(PlanTurnTest, NothingInCommonIsANewConversation) {
  auto committed = Committed({Msg("user", "a"), Msg("assistant", "b")});
  EXPECT_EQ(PlanTurn(committed, {Msg("user", "x")}).kind, TurnPlan::Kind::kNew);
  EXPECT_EQ(PlanTurn(committed, {Msg("user", "a")}).kind, TurnPlan::Kind::kNew);
}

TEST(ParseChatRequestTest, ReadsTheFieldsAndIgnoresUnknownOnes) {
  ApiError e;
  auto r = ParseChatRequest(R"({"model": "m", "messages": [
      {"role": "developer", "content": "sys"},
      {"role": "user", "content": [{"type": "text", "text": "he"}, {"type": "text", "text": "llo"}]}],
      "max_completion_tokens": 7, "temperature": 0, "top_p": 0.5, "seed": -1,
      "stop": "END", "logprobs": true, "top_logprobs": 2, "stream": true,
      "stream_options": {"include_usage": true}, "frequency_penalty": 0.3, "tools": []})",
                            {}, &e);
  ASSERT_TRUE(r.has_value()) << e.message;
  ASSERT_EQ(r->messages.size(), 2u);
  EXPECT_EQ(r->messages[0].role(), "system");
  EXPECT_EQ(r->messages[1].content(), "hello");
  EXPECT_EQ(r->sampling.max_tokens(), 7u);
  EXPECT_EQ(r->sampling.temperature(), 0.0f);
  EXPECT_EQ(r->sampling.seed(), ~uint64_t{0});
  ASSERT_EQ(r->sampling.stop_size(), 1);
  EXPECT_TRUE(r->sampling.logprobs());
  EXPECT_EQ(r->sampling.top_logprobs(), 2u);
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
}

TEST(LogprobEntryTest, ListsTheTopAlternativesWithTheirBytes) {
  const Json j = LogprobEntry(
      {.token = "a",
       .logprob = -0.5f,
       .top = {{.token = "a", .logprob = -0.5f}, {.token = "\xC3", .logprob = -1.5f}}});
  EXPECT_EQ(j["token"], "a");
  ASSERT_EQ(j["top_logprobs"].size(), 2u);
  EXPECT_EQ(j["top_logprobs"][0]["token"], "a");
  EXPECT_EQ(j["top_logprobs"][1]["logprob"], -1.5);
  EXPECT_EQ(j["top_logprobs"][1]["bytes"], Json::array({0xC3}));
  EXPECT_FALSE(j["top_logprobs"][1].contains("top_logprobs"));
}

TEST(ParseChatRequestTest, WrongTypesAndRangesNameTheParameter) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0})",
       "max_tokens"},
      {R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 9000})",
       "max_tokens"},
      {R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "a"})",
       "temperature"},
      {R"({"model": "m", "messages": [{"role": "bot", "content": "x"}]})", "messages[0].role"},
      {R"({"model": "m", "messages": []})", "messages"},
      {R"({"messages": [{"role": "user", "content": "x"}]})", "model"},
  };
  for (const auto& [body, param] : cases) {
    ApiError e;
    EXPECT_FALSE(ParseChatRequest(body, {.max_model_len = 4096}, &e).has_value()) << body;
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, param) << body;
  }
}

TEST(ResponseIdTest, RoundTripsAndRefusesTamperingAndOtherSalts) {
  const std::string id = EncodeResponseId("secret", "salt", {"conv-1", 3});
  auto ref = DecodeResponseId("secret", "salt", id);
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(ref->conversation_id, "conv-1");
  EXPECT_EQ(ref->round, 3u);
  EXPECT_FALSE(DecodeResponseId("secret", "other", id).has_value());
  EXPECT_FALSE(DecodeResponseId("other", "salt", id).has_value());
  std::string tampered = id;
  tampered.back() = tampered.back() == 'A' ? 'B' : 'A';
  EXPECT_FALSE(DecodeResponseId("secret", "salt", tampered).has_value());
  EXPECT_FALSE(DecodeResponseId("secret", "salt", "resp_").has_value());
  EXPECT_FALSE(DecodeResponseId("secret", "salt", "chatcmpl-1").has_value());
}

TEST(FromGrpcTest, StatusesMapToOpenAiErrors) {
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "x")).status, 400);
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "x")).status, 401);
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "x")).status, 403);
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::NOT_FOUND, "x")).status, 404);
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::ABORTED, "x")).status, 409);
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::UNAVAILABLE, "x")).status, 503);
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "x")).status, 504);
  ApiError quota = FromGrpc(
      ToGrpcStatus(WithRetryDelay(absl::ResourceExhaustedError("quota"), absl::Seconds(3))));
  EXPECT_EQ(quota.status, 429);
  EXPECT_EQ(quota.retry_after_s, 3);
  ApiError context = FromGrpc(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                           "the conversation would have 9 tokens of context"));
  EXPECT_EQ(context.status, 400);
  EXPECT_EQ(context.code, "context_length_exceeded");
}

}  // namespace
}  // namespace hc::router::http
