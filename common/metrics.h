// Prometheus metrics: one registry per process (prometheus-cpp core), exposed
// over HTTP on --metrics_port at /metrics (text format 0.0.4) by
// common/http_server (libevent): connections are served concurrently, each
// with its own timeout, so a slow client cannot stall a scrape.
// prometheus-cpp's civetweb Exposer is not used: it failed to start in
// processes that also load the CUDA runtime.
//
// Thread-safety: the registry and every metric family are thread-safe
// (prometheus-cpp); MetricsServer is created once at start-up and stops in its
// destructor.
#ifndef HC_COMMON_METRICS_H_
#define HC_COMMON_METRICS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/http_server.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace hc {

class MetricsServer {
 public:
  // Serves `registry` at http://<host>:<port>/metrics. Port 0 picks a free
  // port (see port()). UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& host, int port, std::shared_ptr<prometheus::Registry> registry);

  ~MetricsServer();

  int port() const;
  std::string endpoint() const;  // "host:port"

 private:
  MetricsServer(std::string host, std::shared_ptr<prometheus::Registry> registry);
  HttpResponse Answer(const HttpRequest& req) const;

  const std::string host_;
  const std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<HttpServer> http_;  // last: stops before the rest goes away
};

// Exponential histogram buckets: start, start*factor, ... (count buckets).
prometheus::Histogram::BucketBoundaries ExponentialBuckets(double start, double factor, int count);

// Bucket boundaries for request latencies (100 us .. ~100 s) and for
// sub-millisecond operations such as commits (1 us .. ~1 s).
prometheus::Histogram::BucketBoundaries LatencyBuckets();
prometheus::Histogram::BucketBoundaries FastOpBuckets();

}  // namespace hc

#endif  // HC_COMMON_METRICS_H_
