// Prometheus metrics: one registry per process, exposed over HTTP on
// --metrics_port at /metrics (prometheus-cpp's civetweb-based Exposer).
//
// Thread-safety: the registry and every metric family are thread-safe
// (prometheus-cpp); MetricsServer is created once at start-up.
#ifndef HC_COMMON_METRICS_H_
#define HC_COMMON_METRICS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/exposer.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace hc {

class MetricsServer {
 public:
  // Serves `registry` at http://<host>:<port>/metrics. Port 0 picks a free
  // port (see port()). UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& host, int port, std::shared_ptr<prometheus::Registry> registry);

  int port() const { return port_; }
  std::string endpoint() const;  // "host:port"

 private:
  MetricsServer(std::unique_ptr<prometheus::Exposer> exposer, std::string host, int port)
      : exposer_(std::move(exposer)), host_(std::move(host)), port_(port) {}
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string host_;
  int port_;
};

// Exponential histogram buckets: start, start*factor, ... (count buckets).
prometheus::Histogram::BucketBoundaries ExponentialBuckets(double start, double factor, int count);

// Bucket boundaries for request latencies (100 us .. ~100 s) and for
// sub-millisecond operations such as commits (1 us .. ~1 s).
prometheus::Histogram::BucketBoundaries LatencyBuckets();
prometheus::Histogram::BucketBoundaries FastOpBuckets();

}  // namespace hc

#endif  // HC_COMMON_METRICS_H_
