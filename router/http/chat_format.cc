#include "router/http/chat_format.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace hc::router::http {
namespace {
namespace v1 = hybridcache::v1;

std::string Sse(const Json& j) { return absl::StrCat("data: ", Dump(j), "\n\n"); }

class ChatFormat final : public TurnFormat {
 public:
  explicit ChatFormat(ChatFormatOptions o)
      : o_(std::move(o)),
        id_("chatcmpl-" + RandomHex(24)),
        created_(absl::ToUnixSeconds(absl::Now())) {}

  void Started(HttpReply& reply, const v1::TurnStarted&, const TurnTarget&) override {
    if (!o_.stream) return;
    HttpHeaders headers = {{"Cache-Control", "no-cache"}};
    if (!o_.client_conversation_id.empty()) {
      headers.emplace_back("X-Conversation-Id", o_.client_conversation_id);
    }
    reply.StartStream(200, "text/event-stream", std::move(headers));
    reply.Write(Sse(ChunkJson({{"role", "assistant"}, {"content", ""}}, Json(), Json())));
  }

  void Chunk(HttpReply& reply, const v1::TokenChunk& chunk) override {
    Json logprobs;
    if (o_.logprobs) logprobs = {{"content", Logprobs(chunk)}};
    if (!o_.stream) {
      text_ += chunk.text();
      if (o_.logprobs) {
        for (Json& e : logprobs["content"]) all_logprobs_.push_back(std::move(e));
      }
      return;
    }
    if (chunk.text().empty() && !o_.logprobs) return;
    reply.Write(Sse(ChunkJson({{"content", chunk.text()}}, Json(), std::move(logprobs))));
  }

  void Completed(HttpReply& reply, const v1::TurnCompleted& c, const TurnTarget&) override {
    if (o_.stream) {
      reply.Write(Sse(ChunkJson(Json::object(), Json(c.finish_reason()), Json())));
      if (o_.include_usage) {
        Json usage_chunk = Base("chat.completion.chunk");
        usage_chunk["choices"] = Json::array();
        usage_chunk["usage"] = ChatUsage(c.usage());
        reply.Write(Sse(usage_chunk));
      }
      reply.Write("data: [DONE]\n\n");
      reply.End();
      return;
    }
    Json j = Base("chat.completion");
    Json choice = {{"index", 0},
                   {"message", {{"role", "assistant"}, {"content", text_}, {"refusal", Json()}}},
                   {"logprobs", o_.logprobs ? Json{{"content", all_logprobs_}} : Json()},
                   {"finish_reason", c.finish_reason()}};
    j["choices"] = Json::array({std::move(choice)});
    j["usage"] = ChatUsage(c.usage());
    HttpResponse r{200, "application/json", Dump(j)};
    if (!o_.client_conversation_id.empty()) {
      r.headers.emplace_back("X-Conversation-Id", o_.client_conversation_id);
    }
    reply.Send(std::move(r));
  }

  void Failed(HttpReply& reply, const ApiError& error, bool started) override {
    if (started && o_.stream) {
      // The head (200) is out: the error travels as an event, and no [DONE].
      reply.Write(absl::StrCat("data: ", ErrorBody(error), "\n\n"));
      reply.End();
      return;
    }
    reply.Send(ErrorResponse(error));
  }

 private:
  Json Base(const char* object) const {
    return {{"id", id_},
            {"object", object},
            {"created", created_},
            {"model", o_.model},
            {"system_fingerprint", Json()}};
  }
  Json ChunkJson(Json delta, Json finish_reason, Json logprobs) const {
    Json j = Base("chat.completion.chunk");
    j["choices"] = Json::array({{{"index", 0},
                                 {"delta", std::move(delta)},
                                 {"logprobs", std::move(logprobs)},
                                 {"finish_reason", std::move(finish_reason)}}});
    return j;
  }
  std::string Token(uint32_t id) const {
    return o_.codec != nullptr ? o_.codec->TokenBytes({&id, 1}) : std::string();
  }
  Json Logprobs(const v1::TokenChunk& chunk) const {
    Json out = Json::array();
    for (int i = 0; i < chunk.token_ids_size(); ++i) {
      const uint32_t id = chunk.token_ids(i);
      TokenLogprob t;
      t.token = Token(id);
      t.logprob = i < chunk.logprobs_size() ? chunk.logprobs(i) : 0.0f;
      if (i < chunk.top_logprobs_size()) {
        const v1::TopLogprobs& top = chunk.top_logprobs(i);
        for (int k = 0; k < top.token_ids_size() && k < top.logprobs_size(); ++k) {
          const uint32_t alt = top.token_ids(k);
          t.top.push_back({.token = Token(alt), .logprob = top.logprobs(k)});
        }
      }
      out.push_back(LogprobEntry(t));
    }
    return out;
  }

  const ChatFormatOptions o_;
  const std::string id_;
  const int64_t created_;
  std::string text_;
  Json all_logprobs_ = Json::array();
};

}  // namespace

HttpResponse ErrorResponse(const ApiError& error) {
  HttpResponse r{error.status, "application/json", ErrorBody(error)};
  if (error.retry_after_s > 0)
    r.headers.emplace_back("Retry-After", absl::StrCat(error.retry_after_s));
  if (error.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

std::unique_ptr<TurnFormat> NewChatFormat(ChatFormatOptions options) {
  return std::make_unique<ChatFormat>(std::move(options));
}

}  // namespace hc::router::http
