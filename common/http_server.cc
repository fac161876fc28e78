#include "common/http_server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <deque>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace hc {

// The hand-over from other threads to the loop thread: a FIFO of closures
// and one event that the loop runs them from, so they apply in order.
struct HttpLoop {
  absl::Mutex mu;
  std::deque<std::function<void()>> queue ABSL_GUARDED_BY(mu);
  bool stopped ABSL_GUARDED_BY(mu) = false;
  event* wake = nullptr;  // set before the loop starts, freed by the server
  // Loop thread only: replies not yet finished, kept alive while a
  // connection's close callback may still name them.
  absl::flat_hash_map<HttpReply*, std::shared_ptr<HttpReply>> pending;

  void Post(std::function<void()> fn) {
    {
      absl::MutexLock lock(&mu);
      if (stopped) return;
      queue.push_back(std::move(fn));
    }
    event_active(wake, EV_READ, 0);
  }

  static void Drain(evutil_socket_t, short, void* arg) {
    auto* loop = static_cast<HttpLoop*>(arg);
    std::deque<std::function<void()>> batch;
    {
      absl::MutexLock lock(&loop->mu);
      batch.swap(loop->queue);
    }
    for (auto& fn : batch) fn();
  }
};

namespace {

const char* MethodName(evhttp_cmd_type type) {
  switch (type) {
    case EVHTTP_REQ_GET:
      return "GET";
    case EVHTTP_REQ_HEAD:
      return "HEAD";
    case EVHTTP_REQ_POST:
      return "POST";
    case EVHTTP_REQ_PUT:
      return "PUT";
    case EVHTTP_REQ_DELETE:
      return "DELETE";
    case EVHTTP_REQ_OPTIONS:
      return "OPTIONS";
    case EVHTTP_REQ_PATCH:
      return "PATCH";
    case EVHTTP_REQ_TRACE:
      return "TRACE";
    default:
      return "OTHER";
  }
}

void AddHeaders(evhttp_request* req, const std::string& content_type, const HttpHeaders& extra) {
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Content-Type", content_type.c_str());
  for (const auto& [name, value] : extra) evhttp_add_header(headers, name.c_str(), value.c_str());
}

bufferevent* NewSslBufferevent(event_base* base, void* ctx) {
  SSL* ssl = SSL_new(static_cast<SSL_CTX*>(ctx));
  return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                        BEV_OPT_CLOSE_ON_FREE);
}

absl::StatusOr<SSL_CTX*> LoadSslContext(const HttpServerOptions& o) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return absl::InternalError("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx, o.tls_cert_file.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, o.tls_key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("cannot load the HTTPS certificate ",
                                                   o.tls_cert_file, " and key ", o.tls_key_file));
  }
  return ctx;
}

}  // namespace

const char* HttpReason(int code) {
  switch (code) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Status";
  }
}

std::string_view HttpRequest::Header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return {};
}

HttpReply::~HttpReply() = default;

void HttpReply::SetOnClose(std::function<void()> on_close) {
  loop_->Post([self = shared_from_this(), fn = std::move(on_close)]() mutable {
    self->on_close_ = std::move(fn);
  });
}

void HttpReply::Send(HttpResponse response) {
  loop_->Post([self = shared_from_this(), r = std::move(response)] {
    if (self->done_) return;
    AddHeaders(self->req_, r.content_type, r.headers);
    evbuffer* out = evbuffer_new();
    // evhttp sends the Content-Length of the body and drops the body for HEAD.
    evbuffer_add(out, r.body.data(), r.body.size());
    self->Finish();
    evhttp_send_reply(self->req_, r.code, HttpReason(r.code), out);
    evbuffer_free(out);
  });
}

void HttpReply::StartStream(int code, std::string content_type, HttpHeaders headers) {
  loop_->Post([self = shared_from_this(), code, type = std::move(content_type),
               headers = std::move(headers)] {
    if (self->done_) return;
    AddHeaders(self->req_, type, headers);
    evhttp_send_reply_start(self->req_, code, HttpReason(code));
  });
}

void HttpReply::Write(std::string data) {
  loop_->Post([self = shared_from_this(), data = std::move(data)] {
    if (self->done_) return;
    evbuffer* out = evbuffer_new();
    evbuffer_add(out, data.data(), data.size());
    evhttp_send_reply_chunk(self->req_, out);
    evbuffer_free(out);
  });
}

void HttpReply::End() {
  loop_->Post([self = shared_from_this()] {
    if (self->done_) return;
    self->Finish();
    evhttp_send_reply_end(self->req_);
  });
}

void HttpReply::Finish() {
  done_ = true;
  on_close_ = nullptr;
  evhttp_connection* conn = evhttp_request_get_connection(req_);
  if (conn != nullptr) evhttp_connection_set_closecb(conn, nullptr, nullptr);
  // Last: may drop the last reference other than the caller's closure.
  loop_->pending.erase(this);
}

void HttpReply::OnConnectionClose(evhttp_connection* conn, void* arg) {
  auto* self = static_cast<HttpReply*>(arg);
  std::shared_ptr<HttpReply> keep = self->shared_from_this();
  self->closed_ = true;
  self->done_ = true;
  evhttp_connection_set_closecb(conn, nullptr, nullptr);
  // A client that went away: evhttp has detached the unanswered request from
  // the connection and leaves it to us to free. (When the server itself
  // closes the connection, the connection frees it.)
  if (evhttp_request_get_connection(self->req_) == nullptr) evhttp_request_free(self->req_);
  self->req_ = nullptr;
  self->loop_->pending.erase(self);
  if (self->on_close_) {
    std::function<void()> fn = std::move(self->on_close_);
    self->on_close_ = nullptr;
    fn();
  }
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                              std::vector<Route> routes) {
  // The destructor stops the loop from another thread; replies are posted
  // from other threads.
  static std::once_flag threads_once;
  std::call_once(threads_once, [] { evthread_use_pthreads(); });
  std::unique_ptr<HttpServer> server(new HttpServer());
  server->routes_ = std::move(routes);
  server->base_ = event_base_new();
  if (server->base_ == nullptr) return absl::InternalError("event_base_new failed");
  server->loop_ = std::make_shared<HttpLoop>();
  server->loop_->wake =
      event_new(server->base_, -1, EV_PERSIST, &HttpLoop::Drain, server->loop_.get());
  server->http_ = evhttp_new(server->base_);
  if (server->http_ == nullptr) return absl::InternalError("evhttp_new failed");
  if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
    absl::StatusOr<SSL_CTX*> ctx = LoadSslContext(options);
    if (!ctx.ok()) return ctx.status();
    server->ssl_ctx_ = *ctx;
    evhttp_set_bevcb(
        server->http_, [](event_base* base, void* arg) { return NewSslBufferevent(base, arg); },
        server->ssl_ctx_);
  }
  timeval tv{static_cast<time_t>(absl::ToInt64Seconds(options.timeout)),
             static_cast<suseconds_t>(absl::ToInt64Microseconds(options.timeout) % 1000000)};
  evhttp_set_timeout_tv(server->http_, &tv);
  evhttp_set_max_headers_size(server->http_, static_cast<ev_ssize_t>(options.max_headers_bytes));
  evhttp_set_max_body_size(server->http_, static_cast<ev_ssize_t>(options.max_body_bytes));
  // Every method evhttp parses but CONNECT (whose target is not a path)
  // reaches the routes, so that they answer a wrong one (405) themselves,
  // rather than evhttp's HTML 501.
  evhttp_set_allowed_methods(server->http_, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                                EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                                EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH |
                                                EVHTTP_REQ_TRACE);
  evhttp_set_gencb(server->http_, &HttpServer::OnRequest, server.get());
  evhttp_bound_socket* bound = evhttp_bind_socket_with_handle(server->http_, options.host.c_str(),
                                                              static_cast<uint16_t>(options.port));
  if (bound == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve HTTP on ", options.host, ":", options.port));
  }
  // Accepted sockets inherit it (Linux): a stream's small chunks go out at
  // once instead of waiting for the client's delayed ACK (Nagle).
  int one = 1;
  setsockopt(evhttp_bound_socket_get_fd(bound), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  getsockname(evhttp_bound_socket_get_fd(bound), reinterpret_cast<sockaddr*>(&addr), &len);
  server->port_ =
      ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                       : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  event_base* base = server->base_;
  server->thread_ = std::thread([base] { event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY); });
  return server;
}

HttpServer::~HttpServer() {
  if (loop_ != nullptr) {
    absl::MutexLock lock(&loop_->mu);
    loop_->stopped = true;
  }
  if (thread_.joinable()) {
    event_base_loopbreak(base_);
    thread_.join();
  }
  // Closes the listener and every connection (close callbacks of replies
  // still pending run here, on this thread, the loop being stopped).
  if (http_ != nullptr) evhttp_free(http_);
  if (loop_ != nullptr) {
    std::deque<std::function<void()>> dropped;
    {
      absl::MutexLock lock(&loop_->mu);
      dropped.swap(loop_->queue);
    }
    dropped.clear();
    loop_->pending.clear();
    if (loop_->wake != nullptr) event_free(loop_->wake);
    loop_->wake = nullptr;
  }
  if (base_ != nullptr) event_base_free(base_);
  if (ssl_ctx_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(ssl_ctx_));
}

void HttpServer::OnRequest(evhttp_request* req, void* arg) {
  auto* self = static_cast<HttpServer*>(arg);
  HttpRequest request;
  request.method = MethodName(evhttp_request_get_command(req));
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  request.path = path != nullptr && *path != '\0' ? path : "/";
  evbuffer* in = evhttp_request_get_input_buffer(req);
  request.body.resize(evbuffer_get_length(in));
  evbuffer_copyout(in, request.body.data(), request.body.size());
  const evkeyvalq* in_headers = evhttp_request_get_input_headers(req);
  for (const evkeyval* h = in_headers->tqh_first; h != nullptr; h = h->next.tqe_next) {
    request.headers.emplace_back(absl::AsciiStrToLower(h->key), h->value);
  }

  const Route* route = nullptr;
  for (const Route& r : self->routes_) {
    if (r.prefix ? request.path.rfind(r.path, 0) == 0 : r.path == request.path) {
      route = &r;
      break;
    }
  }
  if (route != nullptr && route->async_handler) {
    std::shared_ptr<HttpReply> reply(new HttpReply(self->loop_, req));
    self->loop_->pending[reply.get()] = reply;
    evhttp_connection* conn = evhttp_request_get_connection(req);
    if (conn != nullptr) {
      evhttp_connection_set_closecb(conn, &HttpReply::OnConnectionClose, reply.get());
    }
    route->async_handler(std::move(request), std::move(reply));
    return;
  }
  HttpResponse response{404, "text/plain; charset=utf-8",
                        absl::StrCat("no such path: ", request.path, "\n")};
  if (route != nullptr) response = route->handler(request);
  AddHeaders(req, response.content_type, response.headers);
  evbuffer* out = evbuffer_new();
  // evhttp sends the Content-Length of the body and drops the body for HEAD.
  evbuffer_add(out, response.body.data(), response.body.size());
  evhttp_send_reply(req, response.code, HttpReason(response.code), out);
  evbuffer_free(out);
}

}  // namespace hc
