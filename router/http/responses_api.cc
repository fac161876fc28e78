#include "router/http/responses_api.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "router/http/chat_format.h"
#include "router/http/openai_types.h"
#include "router/http/turn_exchange.h"

namespace hc::router::http {
namespace {
namespace v1 = hybridcache::v1;
using Shared = OpenAiServer::Shared;

constexpr char kIdPrefix[] = "resp_";
constexpr size_t kMacBytes = 16;

std::string Mac(const std::string& secret, const std::string& salt, const std::string& payload) {
  const std::string data = absl::StrCat(salt.size(), ":", salt, payload);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), kMacBytes);
}

ApiError NotFound(std::string param, std::string message) {
  ApiError e;
  e.status = 404;
  e.code = "not_found";
  e.param = std::move(param);
  e.message = std::move(message);
  return e;
}

ApiError UnknownResponse(const std::string& id, const char* param) {
  return NotFound(param, absl::StrCat("Response with id '", id, "' not found."));
}

Json UsageJson(const v1::Usage& u) {
  return {{"input_tokens", u.prompt_tokens()},
          {"input_tokens_details", {{"cached_tokens", u.cached_tokens()}}},
          {"output_tokens", u.completion_tokens()},
          {"output_tokens_details", {{"reasoning_tokens", 0}}},
          {"total_tokens", u.prompt_tokens() + u.completion_tokens()}};
}

struct ResponseFields {
  std::string id;
  std::string model;
  std::string status = "completed";  // in_progress | completed | incomplete
  std::string text;
  std::string previous_response_id;
  Json usage;  // null when unknown
  int64_t created_at = 0;
};

std::string MessageId(const std::string& response_id) {
  return "msg_" + response_id.substr(sizeof(kIdPrefix) - 1);
}

Json MessageItem(const ResponseFields& f, const char* status) {
  return {
      {"type", "message"},
      {"id", MessageId(f.id)},
      {"status", status},
      {"role", "assistant"},
      {"content",
       Json::array({{{"type", "output_text"}, {"text", f.text}, {"annotations", Json::array()}}})}};
}

Json ResponseJson(const ResponseFields& f) {
  Json output = Json::array();
  if (f.status != "in_progress") output.push_back(MessageItem(f, "completed"));
  return {{"id", f.id},
          {"object", "response"},
          {"created_at", f.created_at},
          {"status", f.status},
          {"error", Json()},
          {"incomplete_details",
           f.status == "incomplete" ? Json{{"reason", "max_output_tokens"}} : Json()},
          {"instructions", Json()},
          {"model", f.model},
          {"output", std::move(output)},
          {"parallel_tool_calls", false},
          {"previous_response_id",
           f.previous_response_id.empty() ? Json() : Json(f.previous_response_id)},
          {"tool_choice", "auto"},
          {"tools", Json::array()},
          {"text", {{"format", {{"type", "text"}}}}},
          {"usage", f.usage},
          {"metadata", Json::object()}};
}

class ResponsesFormat final : public TurnFormat {
 public:
  ResponsesFormat(std::shared_ptr<Shared> shared, std::string model, bool stream,
                  std::string previous)
      : shared_(std::move(shared)), stream_(stream) {
    f_.model = std::move(model);
    f_.previous_response_id = std::move(previous);
    f_.created_at = absl::ToUnixSeconds(absl::Now());
  }

  void Started(HttpReply& reply, const v1::TurnStarted& started, const TurnTarget& t) override {
    f_.id = EncodeResponseId(shared_->options.response_id_secret, t.cache_salt,
                             {t.conversation_id, started.round()});
    if (!stream_) return;
    reply.StartStream(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
    f_.status = "in_progress";
    Event("response.created", {{"response", ResponseJson(f_)}}, reply);
    Event("response.in_progress", {{"response", ResponseJson(f_)}}, reply);
    Json item = MessageItem(f_, "in_progress");
    item["content"] = Json::array();
    Event("response.output_item.added", {{"output_index", 0}, {"item", item}}, reply);
    Event("response.content_part.added",
          {{"item_id", MessageId(f_.id)},
           {"output_index", 0},
           {"content_index", 0},
           {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", Json::array()}}}},
          reply);
  }

  void Chunk(HttpReply& reply, const v1::TokenChunk& chunk) override {
    f_.text += chunk.text();
    if (!stream_ || chunk.text().empty()) return;
    Event("response.output_text.delta",
          {{"item_id", MessageId(f_.id)},
           {"output_index", 0},
           {"content_index", 0},
           {"delta", chunk.text()},
           {"logprobs", Json::array()}},
          reply);
  }

  void Completed(HttpReply& reply, const v1::TurnCompleted& c, const TurnTarget&) override {
    f_.status = c.finish_reason() == "length" ? "incomplete" : "completed";
    // The ledger committed the same usage with the round (GET reads it).
    f_.usage = UsageJson(c.usage());
    if (!stream_) return reply.Send({200, "application/json", Dump(ResponseJson(f_))});
    const Json part = {{"type", "output_text"}, {"text", f_.text}, {"annotations", Json::array()}};
    Event("response.output_text.done",
          {{"item_id", MessageId(f_.id)},
           {"output_index", 0},
           {"content_index", 0},
           {"text", f_.text},
           {"logprobs", Json::array()}},
          reply);
    Event(
        "response.content_part.done",
        {{"item_id", MessageId(f_.id)}, {"output_index", 0}, {"content_index", 0}, {"part", part}},
        reply);
    Event("response.output_item.done",
          {{"output_index", 0}, {"item", MessageItem(f_, "completed")}}, reply);
    Event(f_.status == "completed" ? "response.completed" : "response.incomplete",
          {{"response", ResponseJson(f_)}}, reply);
    reply.End();
  }

  void Failed(HttpReply& reply, const ApiError& error, bool started) override {
    if (!(started && stream_)) return reply.Send(ErrorResponse(error));
    Event("error",
          {{"code", error.code.empty() ? Json() : Json(error.code)},
           {"message", error.message},
           {"param", error.param.empty() ? Json() : Json(error.param)}},
          reply);
    reply.End();
  }

 private:
  void Event(const char* type, Json fields, HttpReply& reply) {
    fields["type"] = type;
    fields["sequence_number"] = sequence_++;
    reply.Write(absl::StrCat("event: ", type, "\ndata: ", Dump(fields), "\n\n"));
  }

  const std::shared_ptr<Shared> shared_;
  const bool stream_;
  ResponseFields f_;
  int sequence_ = 0;
};

// Index of round `round`'s reply among the messages (the last assistant
// message is the latest round's; forks copy earlier replies before round 1).
std::optional<int> ReplyIndex(const v1::Conversation& c, uint64_t round) {
  if (round == 0 || round > c.committed_round()) return std::nullopt;
  uint64_t back = c.committed_round() - round;  // replies to skip from the end
  for (int i = c.messages_size() - 1; i >= 0; --i) {
    if (c.messages(i).role() != "assistant") continue;
    if (back == 0) return i;
    --back;
  }
  return std::nullopt;
}

struct GetCall {
  grpc::ClientContext ctx;
  v1::GetConversationRequest request;
  v1::Conversation response;
};

void HandleGet(const std::shared_ptr<Shared>& s, const HttpRequest& req,
               std::shared_ptr<HttpReply> reply, const std::string& id) {
  const std::string salt(req.Header("x-cache-salt"));
  std::optional<ResponseRef> ref = DecodeResponseId(s->options.response_id_secret, salt, id);
  if (!ref.has_value()) return reply->Send(ErrorResponse(UnknownResponse(id, "response_id")));
  auto call = std::make_shared<GetCall>();
  if (std::string_view a = req.Header("authorization"); !a.empty()) {
    call->ctx.AddMetadata("authorization", std::string(a));
  }
  call->ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  call->request.set_conversation_id(ref->conversation_id);
  call->request.set_cache_salt(salt);
  s->stub->async()->GetConversation(
      &call->ctx, &call->request, &call->response,
      [s, call, reply, ref = *ref, id](grpc::Status status) {
        if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
          return reply->Send(ErrorResponse(UnknownResponse(id, "response_id")));
        }
        if (!status.ok()) return reply->Send(ErrorResponse(FromGrpc(status)));
        std::optional<int> at = ReplyIndex(call->response, ref.round);
        if (!at.has_value()) return reply->Send(ErrorResponse(UnknownResponse(id, "response_id")));
        ResponseFields f;
        f.id = id;
        f.model = s->options.model_name;
        f.text = call->response.messages(*at).content();
        // Committed with the round in the ledger, so every router replica
        // and a restarted one answer alike; null for a round an earlier
        // version committed without it.
        const auto& rounds = call->response.rounds();
        if (ref.round <= static_cast<uint64_t>(rounds.size()) &&
            rounds[static_cast<int>(ref.round - 1)].has_usage()) {
          f.usage = UsageJson(rounds[static_cast<int>(ref.round - 1)].usage());
        }
        reply->Send({200, "application/json", Dump(ResponseJson(f))});
      });
}

}  // namespace

std::string EncodeResponseId(const std::string& secret, const std::string& salt,
                             const ResponseRef& ref) {
  std::string payload(8, '\0');
  for (int i = 0; i < 8; ++i) payload[i] = static_cast<char>(ref.round >> (56 - 8 * i));
  payload += ref.conversation_id;
  return absl::StrCat(kIdPrefix, absl::WebSafeBase64Escape(Mac(secret, salt, payload) + payload));
}

std::optional<ResponseRef> DecodeResponseId(const std::string& secret, const std::string& salt,
                                            const std::string& id) {
  if (id.rfind(kIdPrefix, 0) != 0) return std::nullopt;
  std::string raw;
  if (!absl::WebSafeBase64Unescape(id.substr(sizeof(kIdPrefix) - 1), &raw)) return std::nullopt;
  if (raw.size() <= kMacBytes + 8) return std::nullopt;
  const std::string payload = raw.substr(kMacBytes);
  const std::string mac = Mac(secret, salt, payload);
  if (CRYPTO_memcmp(mac.data(), raw.data(), kMacBytes) != 0) return std::nullopt;
  ResponseRef ref;
  for (int i = 0; i < 8; ++i) ref.round = (ref.round << 8) | static_cast<unsigned char>(payload[i]);
  ref.conversation_id = payload.substr(8);
  return ref;
}

void HandleResponses(const std::shared_ptr<Shared>& s, HttpRequest req,
                     std::shared_ptr<HttpReply> reply) {
  constexpr std::string_view kBase = "/v1/responses";
  if (req.path.size() > kBase.size() + 1 && req.path[kBase.size()] == '/') {
    if (req.method != "GET") {
      return reply->Send(ErrorResponse(ApiError{.status = 405, .message = "Use GET."}));
    }
    return HandleGet(s, req, std::move(reply), req.path.substr(kBase.size() + 1));
  }
  if (req.path != kBase) {
    return reply->Send(ErrorResponse(NotFound("", "No such path: " + req.path)));
  }
  if (req.method != "POST") {
    return reply->Send(ErrorResponse(ApiError{.status = 405, .message = "Use POST."}));
  }
  ApiError e;
  if (req.body.size() > s->options.max_body_bytes) {
    e.status = 413;
    e.code = "request_too_large";
    e.message =
        absl::StrCat("The request body is ", req.body.size(),
                     " bytes; this server accepts at most ", s->options.max_body_bytes, ".");
    return reply->Send(ErrorResponse(e));
  }
  std::optional<TurnRequest> r =
      ParseResponsesRequest(req.body, {.max_model_len = s->pool->max_model_len()}, &e);
  if (r.has_value() && r->model != s->options.model_name) {
    e = NotFound("model", absl::StrCat("The model '", r->model, "' does not exist."));
    e.code = "model_not_found";
    r.reset();
  }
  if (!r.has_value()) return reply->Send(ErrorResponse(e));
  std::string auth(req.Header("authorization"));
  std::string salt(req.Header("x-cache-salt"));
  if (salt.empty()) salt = r->cache_salt;
  std::vector<v1::ChatMessage> messages;
  if (!r->instructions.empty()) {
    v1::ChatMessage m;
    m.set_role("system");
    m.set_content(r->instructions);
    messages.push_back(std::move(m));
  }
  for (auto& m : r->messages) messages.push_back(std::move(m));
  auto ex = std::make_shared<TurnExchange>(
      s, reply, auth, r->sampling,
      std::make_unique<ResponsesFormat>(s, r->model, r->stream, r->previous_response_id));
  ex->WireCancel();
  TurnTarget t;
  t.cache_salt = salt;
  t.messages = std::move(messages);
  if (r->previous_response_id.empty()) {
    t.conversation_id = "resp-" + RandomHex(24);
    t.expected_round = 0;
    t.one_shot = !r->store;
    return ex->Run(std::move(t));
  }
  std::optional<ResponseRef> ref =
      DecodeResponseId(s->options.response_id_secret, salt, r->previous_response_id);
  if (!ref.has_value()) {
    return ex->Fail(UnknownResponse(r->previous_response_id, "previous_response_id"));
  }
  auto call = std::make_shared<GetCall>();
  ex->Prepare(&call->ctx);
  call->request.set_conversation_id(ref->conversation_id);
  call->request.set_cache_salt(salt);
  ex->SetActive(&call->ctx);
  s->stub->async()->GetConversation(
      &call->ctx, &call->request, &call->response,
      [ex, call, ref = *ref, t = std::move(t),
       prev = r->previous_response_id](grpc::Status status) mutable {
        ex->SetActive(nullptr);
        if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
          return ex->Fail(UnknownResponse(prev, "previous_response_id"));
        }
        if (!status.ok()) return ex->Fail(FromGrpc(status));
        const v1::Conversation& c = call->response;
        std::optional<int> at = ReplyIndex(c, ref.round);
        if (!at.has_value()) return ex->Fail(UnknownResponse(prev, "previous_response_id"));
        if (ref.round == c.committed_round()) {
          t.conversation_id = ref.conversation_id;
          t.expected_round = ref.round;
        } else {
          // An older round: fork from its messages (the conversation goes on
          // elsewhere; it is never changed).
          t.conversation_id = "resp-" + RandomHex(24);
          t.fork_source = ref.conversation_id;
          t.fork_messages = static_cast<uint32_t>(*at + 1);
          t.expected_round = 0;
        }
        ex->Run(std::move(t));
      });
}

}  // namespace hc::router::http
