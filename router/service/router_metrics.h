// The router's Prometheus metrics (names as in ARCHITECTURE.md).
// Thread-safety: every method is thread-safe.
#ifndef HC_ROUTER_SERVICE_ROUTER_METRICS_H_
#define HC_ROUTER_SERVICE_ROUTER_METRICS_H_

#include <array>
#include <memory>

#include "absl/status/status.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "router/routing/worker_pool.h"

namespace hc::router {

class RouterMetrics {
 public:
  explicit RouterMetrics(prometheus::Registry& registry);

  void Request(absl::StatusCode code, double seconds);  // hc_router_requests_total{code} + duration
  void RoutingDecision(RouteKind kind);
  void TimeToFirstToken(double seconds);
  void SetConversations(double n);
  void SetWorkers(int healthy, int unhealthy);

 private:
  std::array<prometheus::Counter*, 17> requests_{};
  std::array<prometheus::Counter*, 3> decisions_{};
  prometheus::Histogram* ttft_;
  prometheus::Histogram* duration_;
  prometheus::Gauge* conversations_;
  prometheus::Gauge* healthy_;
  prometheus::Gauge* unhealthy_;
};

}  // namespace hc::router

#endif  // HC_ROUTER_SERVICE_ROUTER_METRICS_H_
