#include "common/metrics.h"

#include <sstream>

#include "absl/strings/str_cat.h"
#include "prometheus/text_serializer.h"

namespace hc {

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& host, int port, std::shared_ptr<prometheus::Registry> registry) {
  HttpServerOptions o;
  o.host = host;
  o.port = port;
  // A scrape is one small GET: a client that takes longer than this to send
  // it is dropped (and only its own connection waits meanwhile).
  o.timeout = absl::Seconds(5);
  o.max_body_bytes = 4096;
  std::unique_ptr<MetricsServer> server(new MetricsServer(host, std::move(registry)));
  MetricsServer* self = server.get();
  absl::StatusOr<std::unique_ptr<HttpServer>> http = HttpServer::Start(
      o, {{"/metrics", [self](const HttpRequest& req) { return self->Answer(req); }}});
  if (!http.ok()) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics: ", http.status().message()));
  }
  server->http_ = *std::move(http);
  return server;
}

MetricsServer::MetricsServer(std::string host, std::shared_ptr<prometheus::Registry> registry)
    : host_(std::move(host)), registry_(std::move(registry)) {}

MetricsServer::~MetricsServer() = default;

int MetricsServer::port() const { return http_->port(); }

HttpResponse MetricsServer::Answer(const HttpRequest& req) const {
  if (req.method != "GET" && req.method != "HEAD") {
    return HttpResponse{405, "text/plain; charset=utf-8", "only GET /metrics\n"};
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", out.str()};
}

std::string MetricsServer::endpoint() const { return absl::StrCat(host_, ":", port()); }

prometheus::Histogram::BucketBoundaries ExponentialBuckets(double start, double factor, int count) {
  prometheus::Histogram::BucketBoundaries b;
  b.reserve(count);
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) b.push_back(v);
  return b;
}

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return ExponentialBuckets(1e-4, 2.0, 21);
}
prometheus::Histogram::BucketBoundaries FastOpBuckets() {
  return ExponentialBuckets(1e-6, 2.0, 21);
}

}  // namespace hc
