#include "router/http/openai_server.h"

#include <functional>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "router/http/chat_format.h"
#include "router/http/openai_types.h"
#include "router/http/responses_api.h"
#include "router/http/turn_exchange.h"

namespace hc::router::http {
namespace {

using Shared = OpenAiServer::Shared;

// evhttp reads bodies and heads up to this many times our own limits, so that
// one a little too large still gets our 413 / 431 in OpenAI's shape (larger
// ones get evhttp's own answer: docs/http-api.md).
constexpr size_t kReadLimitFactor = 4;

// The request head's size as evhttp counted it: "name: value\r\n" per line.
size_t HeadBytes(const HttpRequest& req) {
  size_t n = 0;
  for (const auto& [name, value] : req.headers) n += name.size() + value.size() + 4;
  return n;
}

std::optional<ApiError> HeadTooLarge(const Shared& s, const HttpRequest& req) {
  const size_t n = HeadBytes(req);
  if (n <= s.options.max_headers_bytes) return std::nullopt;
  ApiError e;
  e.status = 431;
  e.code = "request_header_fields_too_large";
  e.message = absl::StrCat("The request headers are ", n, " bytes; this server accepts at most ",
                           s.options.max_headers_bytes, ".");
  return e;
}

// Routes whose handlers first refuse a head that is too large.
HttpServer::Route Guarded(std::shared_ptr<Shared> s, std::string path,
                          std::function<HttpResponse(const HttpRequest&)> handler,
                          bool prefix = false) {
  return {std::move(path),
          [s = std::move(s), handler = std::move(handler)](const HttpRequest& r) {
            if (std::optional<ApiError> e = HeadTooLarge(*s, r)) return ErrorResponse(*e);
            return handler(r);
          },
          nullptr, prefix};
}
HttpServer::Route GuardedAsync(
    std::shared_ptr<Shared> s, std::string path,
    std::function<void(const std::shared_ptr<Shared>&, HttpRequest, std::shared_ptr<HttpReply>)>
        handler,
    bool prefix = false) {
  return {std::move(path), nullptr,
          [s = std::move(s), handler = std::move(handler)](HttpRequest r,
                                                           std::shared_ptr<HttpReply> reply) {
            if (std::optional<ApiError> e = HeadTooLarge(*s, r)) {
              return reply->Send(ErrorResponse(*e));
            }
            handler(s, std::move(r), std::move(reply));
          },
          prefix};
}

ApiError MethodNotAllowed(const std::string& allowed) {
  ApiError e;
  e.status = 405;
  e.message = absl::StrCat("Method not allowed; use ", allowed, ".");
  return e;
}

// The request's Authorization header, when it is one gRPC metadata can carry.
bool Authorization(const HttpRequest& req, std::string* out, ApiError* e) {
  std::string_view a = req.Header("authorization");
  for (char c : a) {
    if (c < 0x20 || c > 0x7e) {
      e->status = 401;
      e->type = "authentication_error";
      e->code = "invalid_api_key";
      e->message = "The Authorization header is not printable ASCII.";
      return false;
    }
  }
  *out = std::string(a);
  return true;
}

// Checks everything a turn request shares: method, size, model. Returns the
// parse limits.
bool CheckTurnRequest(const Shared& s, const HttpRequest& req, ApiError* e) {
  if (req.method != "POST") return (*e = MethodNotAllowed("POST"), false);
  if (req.body.size() > s.options.max_body_bytes) {
    e->status = 413;
    e->code = "request_too_large";
    e->message =
        absl::StrCat("The request body is ", req.body.size(),
                     " bytes; this server accepts at most ", s.options.max_body_bytes, ".");
    return false;
  }
  return true;
}

bool CheckModel(const Shared& s, const std::string& model, ApiError* e) {
  if (model == s.options.model_name) return true;
  e->status = 404;
  e->code = "model_not_found";
  e->param = "model";
  e->message = absl::StrCat("The model '", model, "' does not exist; this server serves '",
                            s.options.model_name, "'.");
  return false;
}

void HandleChat(const std::shared_ptr<Shared>& s, HttpRequest req,
                std::shared_ptr<HttpReply> reply) {
  ApiError e;
  std::string auth;
  if (!CheckTurnRequest(*s, req, &e) || !Authorization(req, &auth, &e)) {
    return reply->Send(ErrorResponse(e));
  }
  std::optional<TurnRequest> r =
      ParseChatRequest(req.body, {.max_model_len = s->pool->max_model_len()}, &e);
  if (!r.has_value() || !CheckModel(*s, r->model, &e)) return reply->Send(ErrorResponse(e));
  std::string client_id(req.Header("x-conversation-id"));
  if (client_id.empty()) client_id = r->conversation_id;
  std::string salt(req.Header("x-cache-salt"));
  if (salt.empty()) salt = r->cache_salt;
  ChatFormatOptions fo{.model = r->model,
                       .stream = r->stream,
                       .include_usage = r->include_usage,
                       .logprobs = r->sampling.logprobs(),
                       .client_conversation_id = client_id,
                       .codec = s->codec};
  auto ex = std::make_shared<TurnExchange>(s, reply, std::move(auth), r->sampling,
                                           NewChatFormat(std::move(fo)));
  ex->WireCancel();
  if (!client_id.empty()) return ex->RunConversation(client_id, salt, std::move(r->messages));
  TurnTarget t;
  t.conversation_id = "hc-oneshot-" + RandomHex(24);
  t.cache_salt = salt;
  t.messages = std::move(r->messages);
  t.expected_round = 0;
  t.one_shot = true;
  ex->Run(std::move(t));
}

HttpResponse Health(const Shared& s, const HttpRequest&) {
  if (s.pool->counts().healthy > 0) return {200, "application/json", R"({"status":"ok"})"};
  return ErrorResponse(ApiError{.status = 503,
                                .type = "server_error",
                                .code = "no_healthy_worker",
                                .message = "no worker is healthy"});
}

HttpResponse Models(const Shared& s, const HttpRequest& req) {
  if (req.method != "GET" && req.method != "HEAD") return ErrorResponse(MethodNotAllowed("GET"));
  Json model = {{"id", s.options.model_name},
                {"object", "model"},
                {"created", 0},
                {"owned_by", "hybridcache"}};
  if (const uint32_t len = s.pool->max_model_len(); len > 0) model["max_model_len"] = len;
  if (req.path == "/v1/models") {
    return {200, "application/json", Dump({{"object", "list"}, {"data", Json::array({model})}})};
  }
  if (req.path == "/v1/models/" + s.options.model_name) {
    return {200, "application/json", Dump(model)};
  }
  return ErrorResponse(
      ApiError{.status = 404, .code = "model_not_found", .message = "The model does not exist."});
}

}  // namespace

absl::StatusOr<std::unique_ptr<OpenAiServer>> OpenAiServer::Start(
    OpenAiServerOptions options, std::shared_ptr<grpc::Channel> channel, const TextCodec* codec,
    WorkerPool* pool) {
  std::unique_ptr<OpenAiServer> server(new OpenAiServer());
  auto s = std::make_shared<Shared>();
  s->stub = hybridcache::v1::ChatService::NewStub(channel);
  s->codec = codec;
  s->pool = pool;
  if (options.response_id_secret.empty()) options.response_id_secret = RandomHex(64);
  s->options = std::move(options);
  HttpServerOptions ho;
  ho.host = s->options.host;
  ho.port = s->options.port;
  ho.tls_cert_file = s->options.tls_cert_file;
  ho.tls_key_file = s->options.tls_key_file;
  ho.max_body_bytes = s->options.max_body_bytes * kReadLimitFactor;
  ho.max_headers_bytes = s->options.max_headers_bytes * kReadLimitFactor;
  // Idle connections (keep-alive between requests) go after this; a turn in
  // flight writes its stream, or holds no read or write timer at all.
  ho.timeout = absl::Seconds(120);
  std::vector<HttpServer::Route> routes;
  routes.push_back(Guarded(s, "/health", [s](const HttpRequest& r) { return Health(*s, r); }));
  routes.push_back(Guarded(
      s, "/v1/models", [s](const HttpRequest& r) { return Models(*s, r); }, true));
  routes.push_back(GuardedAsync(s, "/v1/chat/completions", &HandleChat));
  routes.push_back(GuardedAsync(s, "/v1/responses", &HandleResponses, true));
  // Last: every other path, in OpenAI's error shape.
  routes.push_back(Guarded(
      s, "/",
      [](const HttpRequest& r) {
        return ErrorResponse(
            ApiError{.status = 404, .code = "not_found", .message = "No such path: " + r.path});
      },
      true));
  absl::StatusOr<std::unique_ptr<HttpServer>> http = HttpServer::Start(ho, std::move(routes));
  if (!http.ok()) return http.status();
  server->shared_ = std::move(s);
  server->http_ = *std::move(http);
  return server;
}

OpenAiServer::~OpenAiServer() {
  http_.reset();  // no new requests; replies from now on are dropped
  std::vector<std::function<void()>> cancels;
  {
    absl::MutexLock lock(&shared_->mu);
    shared_->stopping = true;
    for (auto& [_, fn] : shared_->cancels) cancels.push_back(fn);
  }
  for (auto& fn : cancels) fn();
  absl::MutexLock lock(&shared_->mu);
  shared_->mu.Await(absl::Condition(
      +[](int* live) { return *live == 0; }, &shared_->live));
}

}  // namespace hc::router::http
