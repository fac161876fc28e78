// The OpenAI-compatible HTTP API's requests, parsed and validated into the
// ChatService's terms, and its replies and errors in OpenAI's JSON shapes
// (docs/http-api.md). Pure functions of their inputs: no I/O, no state.
//
// Validation follows OpenAI: unknown fields are ignored, a known field of the
// wrong type or out of range is a 400 naming the field (`param`).
#ifndef HC_ROUTER_HTTP_OPENAI_TYPES_H_
#define HC_ROUTER_HTTP_OPENAI_TYPES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "grpcpp/support/status.h"
#include "hybridcache/v1/chat.pb.h"
#include "nlohmann/json.hpp"

namespace hc::router::http {

using Json = nlohmann::json;

// An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status = 400;
  std::string type = "invalid_request_error";
  std::string code;   // "" -> null
  std::string param;  // "" -> null
  std::string message;
  int retry_after_s = 0;  // > 0: a Retry-After header
};

ApiError BadRequest(std::string param, std::string message);
std::string ErrorBody(const ApiError& error);
// The HTTP face of a ChatService status (chat.proto lists the codes).
ApiError FromGrpc(const grpc::Status& status);

// What a Chat Completions or Responses request asks for, in ChatService terms.
struct TurnRequest {
  std::string model;
  // The whole history the client sent (Chat Completions), or the new input
  // items (Responses).
  std::vector<hybridcache::v1::ChatMessage> messages;
  hybridcache::v1::SamplingParams sampling;
  bool stream = false;
  bool include_usage = false;   // stream_options.include_usage
  std::string conversation_id;  // body field; the header takes precedence
  std::string cache_salt;
  // Responses API only.
  std::string previous_response_id;
  std::string instructions;
  bool store = true;
};

struct ParseLimits {
  uint32_t max_model_len = 0;  // 0: unknown (max_tokens then only needs to fit 32 bits)
};

// Parses a POST /v1/chat/completions body; nullopt and `*error` on bad input.
std::optional<TurnRequest> ParseChatRequest(std::string_view body, const ParseLimits& limits,
                                            ApiError* error);
// Parses a POST /v1/responses body.
std::optional<TurnRequest> ParseResponsesRequest(std::string_view body, const ParseLimits& limits,
                                                 ApiError* error);

// How a turn attaches to what the ledger has committed for the conversation.
struct TurnPlan {
  enum class Kind {
    kNew,     // nothing usable committed: send every message to a new conversation
    kExtend,  // the sent history extends the committed one: send only the new messages
    kFork,    // diverges: a new conversation forked from the first `keep` committed messages
  };
  Kind kind = Kind::kNew;
  uint32_t keep = 0;          // committed messages reused (kExtend: all of them)
  uint32_t suffix_begin = 0;  // the first sent message to send
};

// Compares the sent history with the committed messages. The turn is never
// computed on a history the client did not send: it reuses the longest
// committed prefix that equals the sent one, leaving at least one message to
// send (a regenerate resends the last user message on a fork).
TurnPlan PlanTurn(const google::protobuf::RepeatedPtrField<hybridcache::v1::ChatMessage>& committed,
                  const std::vector<hybridcache::v1::ChatMessage>& sent);

// One generated token for `logprobs`: its text and bytes, and its log-probability.
struct TokenLogprob {
  std::string token;
  float logprob = 0;
  std::vector<TokenLogprob> top;  // the most likely tokens there (top_logprobs)
};
Json LogprobEntry(const TokenLogprob& t);

// Usage in Chat Completions' shape.
Json ChatUsage(const hybridcache::v1::Usage& usage);

// Serializes compactly; invalid UTF-8 (never expected) becomes U+FFFD.
std::string Dump(const Json& json);

}  // namespace hc::router::http

#endif  // HC_ROUTER_HTTP_OPENAI_TYPES_H_
