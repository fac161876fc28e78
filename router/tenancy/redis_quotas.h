// TenantQuotas shared by router replicas through Redis (the Redis ledger's
// server), so each tenant's limits hold across all of them.
//
// Layout, with P = <prefix>:q, T = hex tenant:
//   P:{T}:r  sorted set: the tenant's running turns (member: turn id) scored
//            by their lease's end (unix ms); members past it are dropped
//            before counting, so a dead router's turns free their slots after
//            one lease TTL. The key expires with its last lease.
//   P:{T}:b  hash: the token bucket, l (level) and t (unix ms of l); absent
//            means full (it expires once it would have refilled).
// Each operation is one Lua script on Redis's clock (TIME), so replicas with
// skewed clocks agree. If Redis cannot be reached, AdmitTurn refuses with
// UNAVAILABLE (quotas are not silently dropped); Renew/End/Charge are best
// effort (a lost EndTurn expires with the lease; a lost charge is not
// retried).
//
// Thread-safety: thread-safe.
#ifndef HC_ROUTER_TENANCY_REDIS_QUOTAS_H_
#define HC_ROUTER_TENANCY_REDIS_QUOTAS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "router/tenancy/quotas.h"

namespace hc::router {

struct RedisQuotasOptions {
  std::string url;            // redis://host:port[/db], as the ledger's
  std::string prefix = "hc";  // the ledger's redis_prefix
  absl::Duration timeout = absl::Seconds(2);
};

absl::StatusOr<std::unique_ptr<TenantQuotas>> OpenRedisQuotas(const RedisQuotasOptions& options);

}  // namespace hc::router

#endif  // HC_ROUTER_TENANCY_REDIS_QUOTAS_H_
