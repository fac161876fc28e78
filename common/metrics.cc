#include "common/metrics.h"

#include <exception>

#include "absl/strings/str_cat.h"

namespace hc {

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& host, int port, std::shared_ptr<prometheus::Registry> registry) {
  std::unique_ptr<prometheus::Exposer> exposer;
  // prometheus-cpp reports bind failures by throwing; contain it here so no
  // exception crosses the module boundary.
  try {
    exposer = std::make_unique<prometheus::Exposer>(absl::StrCat(host, ":", port));
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", host, ":", port, ": ", e.what()));
  }
  exposer->RegisterCollectable(registry);
  const std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(absl::StrCat("metrics exposer on ", host, ":", port,
                                               " is not listening"));
  }
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(exposer), host, ports[0]));
}

std::string MetricsServer::endpoint() const { return absl::StrCat(host_, ":", port_); }

prometheus::Histogram::BucketBoundaries ExponentialBuckets(double start, double factor,
                                                           int count) {
  prometheus::Histogram::BucketBoundaries b;
  b.reserve(count);
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) b.push_back(v);
  return b;
}

prometheus::Histogram::BucketBoundaries LatencyBuckets() { return ExponentialBuckets(1e-4, 2.0, 21); }
prometheus::Histogram::BucketBoundaries FastOpBuckets() { return ExponentialBuckets(1e-6, 2.0, 21); }

}  // namespace hc
