#include "router/service/router_metrics.h"

#include <algorithm>

#include "common/metrics.h"

namespace hc::router {

RouterMetrics::RouterMetrics(prometheus::Registry& registry) {
  auto& requests = prometheus::BuildCounter()
                       .Name("hc_router_requests_total")
                       .Help("ChatService calls by final status code")
                       .Register(registry);
  for (int c = 0; c < 17; ++c) {
    requests_[c] =
        &requests.Add({{"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(c))}});
  }
  auto& decisions = prometheus::BuildCounter()
                        .Name("hc_router_routing_decisions_total")
                        .Help("Routing decisions: sticky, placed (new conversation), failover")
                        .Register(registry);
  for (int k = 0; k < 3; ++k) {
    decisions_[k] = &decisions.Add({{"decision", RouteKindName(static_cast<RouteKind>(k))}});
  }
  ttft_ = &prometheus::BuildHistogram()
               .Name("hc_router_time_to_first_token_seconds")
               .Help("From receiving Complete to sending the first token")
               .Register(registry)
               .Add({}, LatencyBuckets());
  duration_ = &prometheus::BuildHistogram()
                   .Name("hc_router_request_duration_seconds")
                   .Help("ChatService call duration")
                   .Register(registry)
                   .Add({}, LatencyBuckets());
  conversations_ = &prometheus::BuildGauge()
                        .Name("hc_router_conversations")
                        .Help("Conversations with a committed round in the ledger")
                        .Register(registry)
                        .Add({});
  auto& workers = prometheus::BuildGauge()
                      .Name("hc_router_workers")
                      .Help("Known workers by health")
                      .Register(registry);
  healthy_ = &workers.Add({{"state", "healthy"}});
  unhealthy_ = &workers.Add({{"state", "unhealthy"}});
  expired_ = &prometheus::BuildCounter()
                  .Name("hc_router_conversations_expired_total")
                  .Help("Conversations forgotten after --conversation_ttl without a turn")
                  .Register(registry)
                  .Add({});
  refused_ = &prometheus::BuildCounter()
                  .Name("hc_router_conversations_refused_total")
                  .Help("New conversations refused by --max_conversations_per_salt")
                  .Register(registry)
                  .Add({});
  rewrite_turns_ = &prometheus::BuildCounter()
                        .Name("hc_router_rewrite_turns_total")
                        .Help(
                            "Turns whose chat template rewrote the committed history: "
                            "recomputed from token 0, not served from the cache")
                        .Register(registry)
                        .Add({});
  rewrite_kept_tokens_ = &prometheus::BuildCounter()
                              .Name("hc_router_rewrite_kept_tokens_total")
                              .Help("Committed tokens rewrite turns kept")
                              .Register(registry)
                              .Add({});
  tenant_turns_ = &prometheus::BuildCounter()
                       .Name("hc_router_tenant_turns_total")
                       .Help("Committed turns per tenant")
                       .Register(registry);
  tenant_tokens_ = &prometheus::BuildCounter()
                        .Name("hc_router_tenant_tokens_total")
                        .Help("Prompt and completion tokens of committed turns per tenant")
                        .Register(registry);
  tenant_refusals_ =
      &prometheus::BuildCounter()
           .Name("hc_router_tenant_refusals_total")
           .Help("Calls refused per tenant by reason (authentication, salt rules, quotas)")
           .Register(registry);
}

void RouterMetrics::TenantTurn(const std::string& tenant, uint64_t prompt_tokens,
                               uint64_t completion_tokens) {
  tenant_turns_->Add({{"tenant", tenant}}).Increment();
  tenant_tokens_->Add({{"tenant", tenant}, {"kind", "prompt"}})
      .Increment(static_cast<double>(prompt_tokens));
  tenant_tokens_->Add({{"tenant", tenant}, {"kind", "completion"}})
      .Increment(static_cast<double>(completion_tokens));
}

void RouterMetrics::TenantRefusal(const std::string& tenant, const std::string& reason) {
  tenant_refusals_->Add({{"tenant", tenant}, {"reason", reason}}).Increment();
}

void RouterMetrics::Request(absl::StatusCode code, double seconds) {
  const int c = static_cast<int>(code);
  requests_[c >= 0 && c < 17 ? c : 2]->Increment();
  duration_->Observe(seconds);
}
void RouterMetrics::RoutingDecision(RouteKind kind) {
  decisions_[static_cast<int>(kind)]->Increment();
}
void RouterMetrics::TimeToFirstToken(double seconds) { ttft_->Observe(seconds); }
void RouterMetrics::RewriteTurn(uint64_t kept_tokens) {
  rewrite_turns_->Increment();
  rewrite_kept_tokens_->Increment(static_cast<double>(kept_tokens));
}
void RouterMetrics::SetConversations(double n) { conversations_->Set(n); }
void RouterMetrics::SetLedgerTotals(uint64_t expired, uint64_t refused) {
  absl::MutexLock lock(&ledger_mu_);
  // Totals only grow; a smaller one (never expected) adds nothing.
  if (expired > ledger_expired_)
    expired_->Increment(static_cast<double>(expired - ledger_expired_));
  if (refused > ledger_refused_)
    refused_->Increment(static_cast<double>(refused - ledger_refused_));
  ledger_expired_ = std::max(ledger_expired_, expired);
  ledger_refused_ = std::max(ledger_refused_, refused);
}

void RouterMetrics::SetWorkers(int healthy, int unhealthy) {
  healthy_->Set(healthy);
  unhealthy_->Set(unhealthy);
}

}  // namespace hc::router
