#include "router/tenancy/quotas.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/retry_delay.h"

namespace hc::router {

const char* QuotaRefusalName(QuotaRefusal r) {
  switch (r) {
    case QuotaRefusal::kNone:
      return "none";
    case QuotaRefusal::kConcurrentTurns:
      return "concurrent_turns";
    case QuotaRefusal::kTokensPerMinute:
      return "tokens_per_minute";
  }
  return "none";
}

void TokenBucket::Refill(absl::Time now, uint64_t per_minute) {
  const double cap = static_cast<double>(per_minute);
  if (last == absl::InfinitePast()) {
    level = cap;
  } else if (now > last) {
    // In whole microseconds, so that whole-millisecond steps refill exactly.
    const double us = static_cast<double>(absl::ToInt64Microseconds(now - last));
    level = std::min(cap, level + us * cap / 60e6);
  }
  last = std::max(last, now);
}

absl::Duration TokenBucket::Wait(uint64_t per_minute) const {
  if (level >= 1) return absl::ZeroDuration();
  return absl::Microseconds(std::ceil((1 - level) * 60e6 / static_cast<double>(per_minute)));
}

LocalQuotas::LocalQuotas(std::function<absl::Time()> clock)
    : clock_(clock ? std::move(clock) : [] { return absl::Now(); }) {}

void LocalQuotas::AdmitTurn(const std::string& tenant, const std::string& turn_id,
                            const TenantLimits& limits, absl::Duration lease, AdmitCallback done) {
  Admission a;
  {
    absl::MutexLock lock(&mu_);
    Tenant& t = tenants_[tenant];
    if (limits.tokens_per_minute > 0) {
      t.bucket.Refill(clock_(), limits.tokens_per_minute);
      if (absl::Duration wait = t.bucket.Wait(limits.tokens_per_minute);
          wait > absl::ZeroDuration()) {
        a.refusal = QuotaRefusal::kTokensPerMinute;
        a.status =
            WithRetryDelay(absl::ResourceExhaustedError(absl::StrCat(
                               "this API key's tenant used its ", limits.tokens_per_minute,
                               " tokens per minute; retry in ",
                               absl::FormatDuration(absl::Ceil(wait, absl::Milliseconds(1))))),
                           wait);
      }
    }
    if (a.status.ok() && limits.max_concurrent_turns > 0 &&
        t.running >= limits.max_concurrent_turns) {
      a.refusal = QuotaRefusal::kConcurrentTurns;
      a.status = WithRetryDelay(
          absl::ResourceExhaustedError(
              absl::StrCat("this API key's tenant has ", t.running, " turns in flight, its limit (",
                           limits.max_concurrent_turns, " max_concurrent_turns); retry in ",
                           absl::FormatDuration(kTurnRetryDelay))),
          kTurnRetryDelay);
    }
    // Counted whatever the limit, so a reload that adds one counts correctly.
    if (a.status.ok()) ++t.running;
  }
  std::move(done)(std::move(a));
}

void LocalQuotas::EndTurn(const std::string& tenant, const std::string& turn_id, EndCallback done) {
  {
    absl::MutexLock lock(&mu_);
    auto it = tenants_.find(tenant);
    if (it != tenants_.end() && it->second.running > 0) --it->second.running;
  }
  if (done) std::move(done)();
}

void LocalQuotas::ChargeTokens(const std::string& tenant, uint64_t tokens,
                               const TenantLimits& limits) {
  if (limits.tokens_per_minute == 0) return;
  absl::MutexLock lock(&mu_);
  TokenBucket& b = tenants_[tenant].bucket;
  b.Refill(clock_(), limits.tokens_per_minute);
  b.level -= static_cast<double>(tokens);
}

}  // namespace hc::router
