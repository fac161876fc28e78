// A small HTTP/1.1 server on libevent's evhttp (Debian's libevent, a
// maintained event-driven HTTP implementation): one event-loop thread serves
// any number of connections at once, each with its own read/write timeout, so
// a slow or stalled client holds only its own connection, never the others.
// Request heads and bodies are bounded in size.
//
// Two kinds of routes:
//   - Handler: runs on the loop thread and answers in place (must be quick);
//   - AsyncHandler: gets an HttpReply that any thread may answer later, with
//     one response or a chunked stream (server-sent events). Every operation
//     on it is handed to the loop thread through a queue and applied there in
//     the order it was made; the loop thread alone touches libevent.
//
// Optional TLS (HttpServerOptions::tls_cert_file/tls_key_file): every
// connection is wrapped in an OpenSSL bufferevent.
//
// Thread-safety: Start and the destructor are called by the owner; handlers
// run on the loop thread only; HttpReply is thread-safe.
#ifndef HC_COMMON_HTTP_SERVER_H_
#define HC_COMMON_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

struct event_base;
struct evhttp;
struct evhttp_request;
struct evhttp_connection;

namespace hc {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // "GET", "HEAD", "POST", ...
  std::string path;    // without the query
  std::string body;
  HttpHeaders headers;  // names lower-cased, in the order received
  // The first header of that (lower-case) name; "" when absent.
  std::string_view Header(std::string_view lower_name) const;
};

struct HttpResponse {
  int code = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;     // not sent for HEAD
  HttpHeaders headers;  // extra headers (e.g. Retry-After)
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0 picks a free port
  // A connection that sends or receives nothing for this long is closed.
  absl::Duration timeout = absl::Seconds(10);
  size_t max_headers_bytes = 16 << 10;
  size_t max_body_bytes = 1 << 20;
  // PEM certificate chain and key: serve HTTPS instead of plain HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
};

class HttpServer;
struct HttpLoop;

// The reply to one request of an AsyncHandler. Call exactly one of Send, or
// StartStream then any number of Write then End; from any thread. Once the
// client has gone, everything is dropped (and the on_close callback has run).
class HttpReply : public std::enable_shared_from_this<HttpReply> {
 public:
  ~HttpReply();
  void Send(HttpResponse response);
  // Starts a chunked 200-class response with these headers.
  void StartStream(int code, std::string content_type, HttpHeaders headers = {});
  void Write(std::string data);
  void End();
  // Runs once on the loop thread if the client disconnects before the reply
  // is complete (not after). Set it before the handler returns.
  void SetOnClose(std::function<void()> on_close);

 private:
  friend class HttpServer;
  HttpReply(std::shared_ptr<HttpLoop> loop, evhttp_request* req)
      : loop_(std::move(loop)), req_(req) {}
  // Loop thread only.
  static void OnConnectionClose(evhttp_connection* conn, void* self);
  void Finish();  // detaches from the connection

  std::shared_ptr<HttpLoop> loop_;
  // Loop-thread state.
  evhttp_request* req_;
  bool done_ = false;    // the reply is complete (or abandoned)
  bool closed_ = false;  // the client went away first
  std::function<void()> on_close_;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  using AsyncHandler = std::function<void(HttpRequest, std::shared_ptr<HttpReply>)>;
  struct Route {
    std::string path;  // exact match, or a prefix when `prefix`
    Handler handler;
    AsyncHandler async_handler = nullptr;  // used instead of handler when set
    bool prefix = false;
  };

  // Binds and starts serving `routes` (the first match wins); any other path
  // is 404. UNAVAILABLE when the address cannot be bound; INVALID_ARGUMENT
  // when the TLS files cannot be loaded.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           std::vector<Route> routes);
  // Stops the loop and closes every connection; HttpReply operations made
  // afterwards are dropped.
  ~HttpServer();

  int port() const { return port_; }

 private:
  HttpServer() = default;
  static void OnRequest(evhttp_request* req, void* self);

  std::vector<Route> routes_;
  std::shared_ptr<HttpLoop> loop_;
  event_base* base_ = nullptr;
  evhttp* http_ = nullptr;
  void* ssl_ctx_ = nullptr;  // SSL_CTX*, only with TLS
  int port_ = 0;
  std::thread thread_;
};

// The reason phrase of an HTTP status code ("Status" for unusual ones).
const char* HttpReason(int code);

}  // namespace hc

#endif  // HC_COMMON_HTTP_SERVER_H_
