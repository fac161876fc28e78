// A small HTTP/1.1 server on libevent's evhttp (Debian's libevent, a
// maintained event-driven HTTP implementation): one event-loop thread serves
// any number of connections at once, each with its own read/write timeout, so
// a slow or stalled client holds only its own connection, never the others.
// Request heads and bodies are bounded in size.
//
// Handlers run on the loop thread and must be quick (they answer in place).
//
// Thread-safety: Start and the destructor are called by the owner; handlers
// run on the loop thread only.
#ifndef HC_COMMON_HTTP_SERVER_H_
#define HC_COMMON_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

struct event_base;
struct evhttp;
struct evhttp_request;

namespace hc {

struct HttpRequest {
  std::string method;  // "GET", "HEAD", "POST", ...
  std::string path;    // without the query
  std::string body;
};

struct HttpResponse {
  int code = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;  // not sent for HEAD
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0 picks a free port
  // A connection that sends or receives nothing for this long is closed.
  absl::Duration timeout = absl::Seconds(10);
  size_t max_headers_bytes = 16 << 10;
  size_t max_body_bytes = 1 << 20;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  struct Route {
    std::string path;  // exact match
    Handler handler;
  };

  // Binds and starts serving `routes`; any other path is 404. UNAVAILABLE
  // when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           std::vector<Route> routes);
  ~HttpServer();  // Stops the loop and closes every connection.

  int port() const { return port_; }

 private:
  HttpServer() = default;
  static void OnRequest(evhttp_request* req, void* self);

  std::vector<Route> routes_;
  event_base* base_ = nullptr;
  evhttp* http_ = nullptr;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace hc

#endif  // HC_COMMON_HTTP_SERVER_H_
