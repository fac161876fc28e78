// Per-tenant quotas of turns (router/tenancy/api_keys.h has the limits):
// concurrent turns and tokens per minute. The conversation limit lives in the
// ledger (LedgerOptions::tenant_conversation_limit), next to the per-salt cap.
//
// Tokens per minute is a token bucket holding up to tokens_per_minute tokens,
// refilled continuously at tokens_per_minute per minute, full at first use. A
// turn is admitted while the bucket holds at least one token; a committed
// turn then takes its prompt + completion tokens, which may drive the bucket
// below zero (a turn's size is unknown until it ends), and new turns wait
// until it has refilled to one token. So over any window a tenant uses at
// most tokens_per_minute per minute plus the bucket's size, plus the turns
// already admitted when it ran dry.
//
// A refusal is RESOURCE_EXHAUSTED with a retry delay (common/retry_delay.h):
// for tokens, when the bucket will hold one token again; for concurrent
// turns, kTurnRetryDelay (a turn's end cannot be predicted).
//
// Sharing: LocalQuotas counts in this router only, so with N router replicas
// each enforces the full limits on its own share (a tenant can get up to N
// times each limit). RedisQuotas (redis_quotas.h) shares the counts through
// the Redis ledger's server, so the limits hold across replicas.
//
// Thread-safety: implementations are thread-safe.
#ifndef HC_ROUTER_TENANCY_QUOTAS_H_
#define HC_ROUTER_TENANCY_QUOTAS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "router/tenancy/api_keys.h"

namespace hc::router {

inline constexpr absl::Duration kTurnRetryDelay = absl::Seconds(1);

// Why a turn was refused (also the metrics' reason label).
enum class QuotaRefusal { kNone, kConcurrentTurns, kTokensPerMinute };
const char* QuotaRefusalName(QuotaRefusal r);

struct Admission {
  absl::Status status;  // OK, or RESOURCE_EXHAUSTED with a retry delay
  QuotaRefusal refusal = QuotaRefusal::kNone;
};

class TenantQuotas {
 public:
  using AdmitCallback = absl::AnyInvocable<void(Admission) &&>;
  virtual ~TenantQuotas() = default;

  // Admits turn `turn_id` of `tenant` under `limits`, or refuses it. An
  // admitted turn counts as running until EndTurn, or (Redis) until `lease`
  // passes without RenewTurn, so a dead router's turns free their slots.
  // `done` runs exactly once, inline or on another thread; it must not block.
  virtual void AdmitTurn(const std::string& tenant, const std::string& turn_id,
                         const TenantLimits& limits, absl::Duration lease, AdmitCallback done) = 0;
  // Extends an admitted turn's lease (the turn's heartbeat). Best effort.
  virtual void RenewTurn(const std::string& tenant, const std::string& turn_id,
                         absl::Duration lease) = 0;
  // An admitted turn ended. Best effort (a lost one expires with its lease).
  // `done` (may be empty) runs once the slot is free for the next admission
  // (or the attempt failed), inline or on another thread; a turn finishes its
  // client stream only after it, so a client's next turn never finds its own
  // previous turn still counted.
  using EndCallback = absl::AnyInvocable<void() &&>;
  virtual void EndTurn(const std::string& tenant, const std::string& turn_id, EndCallback done) = 0;
  // Takes a committed turn's tokens from the tenant's bucket. Best effort.
  virtual void ChargeTokens(const std::string& tenant, uint64_t tokens,
                            const TenantLimits& limits) = 0;
};

// The bucket's arithmetic, shared by the local implementation and mirrored by
// the Redis script.
struct TokenBucket {
  double level = 0;
  absl::Time last = absl::InfinitePast();  // InfinitePast: never used (full)
  // Refills up to `now`.
  void Refill(absl::Time now, uint64_t per_minute);
  // Zero when a turn may start; else how long until the bucket holds one token.
  absl::Duration Wait(uint64_t per_minute) const;
};

// Router-local quotas (see above). `clock` null: absl::Now.
class LocalQuotas final : public TenantQuotas {
 public:
  explicit LocalQuotas(std::function<absl::Time()> clock = nullptr);

  void AdmitTurn(const std::string& tenant, const std::string& turn_id, const TenantLimits& limits,
                 absl::Duration lease, AdmitCallback done) override;
  void RenewTurn(const std::string&, const std::string&, absl::Duration) override {}
  void EndTurn(const std::string& tenant, const std::string& turn_id, EndCallback done) override;
  void ChargeTokens(const std::string& tenant, uint64_t tokens,
                    const TenantLimits& limits) override;

 private:
  struct Tenant {
    uint64_t running = 0;
    TokenBucket bucket;
  };
  const std::function<absl::Time()> clock_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Tenant> tenants_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hc::router

#endif  // HC_ROUTER_TENANCY_QUOTAS_H_
