// Prometheus metrics: one registry per process (prometheus-cpp core), exposed
// over HTTP on --metrics_port at /metrics by a small server of our own: one
// thread, one connection at a time (scrapes are rare and small), text format
// 0.0.4. prometheus-cpp's civetweb Exposer is not used: it failed to start in
// processes that also load the CUDA runtime.
//
// Thread-safety: the registry and every metric family are thread-safe
// (prometheus-cpp); MetricsServer is created once at start-up and stops in its
// destructor.
#ifndef HC_COMMON_METRICS_H_
#define HC_COMMON_METRICS_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
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

  int port() const { return port_; }
  std::string endpoint() const;  // "host:port"

 private:
  MetricsServer(int listen_fd, int stop_fd, std::string host, int port,
                std::shared_ptr<prometheus::Registry> registry);
  void Serve();
  void Answer(int fd);

  const int listen_fd_;
  const int stop_fd_;  // eventfd: written by the destructor to end Serve()
  const std::string host_;
  const int port_;
  const std::shared_ptr<prometheus::Registry> registry_;
  std::thread thread_;
};

// Exponential histogram buckets: start, start*factor, ... (count buckets).
prometheus::Histogram::BucketBoundaries ExponentialBuckets(double start, double factor, int count);

// Bucket boundaries for request latencies (100 us .. ~100 s) and for
// sub-millisecond operations such as commits (1 us .. ~1 s).
prometheus::Histogram::BucketBoundaries LatencyBuckets();
prometheus::Histogram::BucketBoundaries FastOpBuckets();

}  // namespace hc

#endif  // HC_COMMON_METRICS_H_
