#include "common/http_server.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <mutex>

#include "absl/strings/str_cat.h"

namespace hc {
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
    default:
      return "OTHER";
  }
}

const char* Reason(int code) {
  switch (code) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Payload Too Large";
    case 500:
      return "Internal Server Error";
    default:
      return "Status";
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                              std::vector<Route> routes) {
  // The destructor stops the loop from another thread.
  static std::once_flag threads_once;
  std::call_once(threads_once, [] { evthread_use_pthreads(); });
  std::unique_ptr<HttpServer> server(new HttpServer());
  server->routes_ = std::move(routes);
  server->base_ = event_base_new();
  if (server->base_ == nullptr) return absl::InternalError("event_base_new failed");
  server->http_ = evhttp_new(server->base_);
  if (server->http_ == nullptr) return absl::InternalError("evhttp_new failed");
  timeval tv{static_cast<time_t>(absl::ToInt64Seconds(options.timeout)),
             static_cast<suseconds_t>(absl::ToInt64Microseconds(options.timeout) % 1000000)};
  evhttp_set_timeout_tv(server->http_, &tv);
  evhttp_set_max_headers_size(server->http_, static_cast<ev_ssize_t>(options.max_headers_bytes));
  evhttp_set_max_body_size(server->http_, static_cast<ev_ssize_t>(options.max_body_bytes));
  evhttp_set_gencb(server->http_, &HttpServer::OnRequest, server.get());
  evhttp_bound_socket* bound = evhttp_bind_socket_with_handle(server->http_, options.host.c_str(),
                                                              static_cast<uint16_t>(options.port));
  if (bound == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve HTTP on ", options.host, ":", options.port));
  }
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
  if (thread_.joinable()) {
    event_base_loopbreak(base_);
    thread_.join();
  }
  if (http_ != nullptr) evhttp_free(http_);  // closes the listener and every connection
  if (base_ != nullptr) event_base_free(base_);
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

  HttpResponse response{404, "text/plain; charset=utf-8",
                        absl::StrCat("no such path: ", request.path, "\n")};
  for (const Route& r : self->routes_) {
    if (r.path == request.path) {
      response = r.handler(request);
      break;
    }
  }
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Content-Type", response.content_type.c_str());
  evbuffer* out = evbuffer_new();
  // evhttp sends the Content-Length of the body and drops the body for HEAD.
  evbuffer_add(out, response.body.data(), response.body.size());
  evhttp_send_reply(req, response.code, Reason(response.code), out);
  evbuffer_free(out);
}

}  // namespace hc
