// The router's Prometheus metrics (the contract: docs/architecture.md).
// Thread-safety: every method is thread-safe.
#ifndef HC_ROUTER_SERVICE_ROUTER_METRICS_H_
#define HC_ROUTER_SERVICE_ROUTER_METRICS_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
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
  // A rewrite turn (router/service/rewrite.h), which kept `kept_tokens` of
  // the committed tokens: hc_router_rewrite_turns_total and
  // hc_router_rewrite_kept_tokens_total. The worker resumes such a turn from
  // its Mamba snapshot when it holds one, else recomputes it
  // from token 0 (usage.cached_tokens and the worker's metrics say so).
  void RewriteTurn(uint64_t kept_tokens);
  void SetConversations(double n);
  void SetWorkers(int healthy, int unhealthy);
  // The ledger's cumulative counts (LedgerCounters), polled: each call adds
  // what grew since the previous one to hc_router_conversations_expired_total
  // and hc_router_conversations_refused_total.
  void SetLedgerTotals(uint64_t expired, uint64_t refused);
  // Per tenant (label "tenant": the API key's tenant, "" without keys and for
  // calls with no valid key; tenants come only from the keys file, so the
  // label's values are bounded): hc_router_tenant_turns_total,
  // hc_router_tenant_tokens_total{kind=prompt|completion} of committed turns,
  // and hc_router_tenant_refusals_total{reason} with reason one of
  // unauthenticated, permission_denied, concurrent_turns, tokens_per_minute,
  // conversations.
  void TenantTurn(const std::string& tenant, uint64_t prompt_tokens, uint64_t completion_tokens);
  void TenantRefusal(const std::string& tenant, const std::string& reason);

 private:
  prometheus::Family<prometheus::Counter>* tenant_turns_;
  prometheus::Family<prometheus::Counter>* tenant_tokens_;
  prometheus::Family<prometheus::Counter>* tenant_refusals_;
  std::array<prometheus::Counter*, 17> requests_{};
  std::array<prometheus::Counter*, 3> decisions_{};
  prometheus::Histogram* ttft_;
  prometheus::Histogram* duration_;
  prometheus::Gauge* conversations_;
  prometheus::Gauge* healthy_;
  prometheus::Gauge* unhealthy_;
  prometheus::Counter* expired_;
  prometheus::Counter* refused_;
  prometheus::Counter* rewrite_turns_;
  prometheus::Counter* rewrite_kept_tokens_;
  absl::Mutex ledger_mu_;
  uint64_t ledger_expired_ ABSL_GUARDED_BY(ledger_mu_) = 0;
  uint64_t ledger_refused_ ABSL_GUARDED_BY(ledger_mu_) = 0;
};

}  // namespace hc::router

#endif  // HC_ROUTER_SERVICE_ROUTER_METRICS_H_
