#include "router/tenancy/redis_quotas.h"

#include <hiredis.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/retry_delay.h"
#include "common/status_macros.h"
#include "router/ledger/redis_client.h"

namespace hc::router {
namespace {

// The bucket's refill, as TokenBucket::Refill (quotas.cc): KEYS[b] holds l
// and t; absent is full.
constexpr const char* kPrelude = R"lua(
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function level(key, now, tpm)
  local b = redis.call('HMGET', key, 'l', 't')
  if not b[1] then return tpm end
  local l, t = tonumber(b[1]), tonumber(b[2])
  if now > t then l = math.min(tpm, l + (now - t) * tpm / 60000) end
  return l
end
)lua";

// KEYS r b; ARGV turn id, lease ms, max concurrent turns, tokens per minute.
// Returns {0} admitted, {1, wait ms} bucket empty, {2, running} at the limit.
constexpr const char* kAdmitScript = R"lua(
local now = now_ms()
local lease, maxt, tpm = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if tpm > 0 then
  local l = level(KEYS[2], now, tpm)
  if l < 1 then return {1, math.ceil((1 - l) * 60000 / tpm)} end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local running = redis.call('ZCARD', KEYS[1])
if maxt > 0 and running >= maxt then return {2, running} end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
return {0}
)lua";

// KEYS r; ARGV turn id, lease ms.
constexpr const char* kRenewScript = R"lua(
local now, lease = now_ms(), tonumber(ARGV[2])
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + lease, ARGV[1]) == 1 then
  if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
end
return 0
)lua";

// KEYS r; ARGV turn id.
constexpr const char* kEndScript = R"lua(
return redis.call('ZREM', KEYS[1], ARGV[1])
)lua";

// KEYS b; ARGV tokens, tokens per minute.
constexpr const char* kChargeScript = R"lua(
local now, tpm = now_ms(), tonumber(ARGV[2])
local l = level(KEYS[1], now, tpm) - tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'l', string.format('%.6f', l), 't', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((tpm - l) * 60000 / tpm) + 1000)
return 0
)lua";

enum Script { kAdmit, kRenew, kEnd, kCharge, kNumScripts };

std::string Ms(absl::Duration d) {
  return absl::StrCat(std::max<int64_t>(1, absl::ToInt64Milliseconds(d)));
}

class RedisQuotas final : public TenantQuotas {
 public:
  RedisQuotas(std::string prefix, std::unique_ptr<RedisClient> client)
      : prefix_(std::move(prefix)), client_(std::move(client)) {}

  void AdmitTurn(const std::string& tenant, const std::string& turn_id, const TenantLimits& limits,
                 absl::Duration lease, AdmitCallback done) override {
    client_->Eval(kAdmit, {Key(tenant, "r"), Key(tenant, "b")},
                  {turn_id, Ms(lease), absl::StrCat(limits.max_concurrent_turns),
                   absl::StrCat(limits.tokens_per_minute)},
                  /*retry_on_loss=*/false,
                  [limits, d = std::move(done)](absl::StatusOr<const redisReply*> r) mutable {
                    std::move(d)(ParseAdmit(std::move(r), limits));
                  });
  }

  void RenewTurn(const std::string& tenant, const std::string& turn_id,
                 absl::Duration lease) override {
    client_->Eval(kRenew, {Key(tenant, "r")}, {turn_id, Ms(lease)}, /*retry_on_loss=*/true,
                  [](absl::StatusOr<const redisReply*> r) { LogFailure("renew", r); });
  }

  void EndTurn(const std::string& tenant, const std::string& turn_id, EndCallback done) override {
    client_->Eval(kEnd, {Key(tenant, "r")}, {turn_id}, /*retry_on_loss=*/true,
                  [done = std::move(done)](absl::StatusOr<const redisReply*> r) mutable {
                    LogFailure("end turn", r);
                    if (done) std::move(done)();
                  });
  }

  void ChargeTokens(const std::string& tenant, uint64_t tokens,
                    const TenantLimits& limits) override {
    if (limits.tokens_per_minute == 0) return;
    client_->Eval(kCharge, {Key(tenant, "b")},
                  {absl::StrCat(tokens), absl::StrCat(limits.tokens_per_minute)},
                  /*retry_on_loss=*/false,
                  [](absl::StatusOr<const redisReply*> r) { LogFailure("charge", r); });
  }

 private:
  std::string Key(const std::string& tenant, const char* suffix) const {
    return absl::StrCat(prefix_, ":q:{", absl::BytesToHexString(tenant), "}:", suffix);
  }

  static void LogFailure(const char* what, const absl::StatusOr<const redisReply*>& r) {
    if (!r.ok()) {
      HC_LOG(WARNING) << "tenant quotas: " << what << " failed: " << r.status();
    } else if ((*r)->type == REDIS_REPLY_ERROR) {
      HC_LOG(WARNING) << "tenant quotas: " << what
                      << " failed: " << std::string((*r)->str, (*r)->len);
    }
  }

  static Admission ParseAdmit(absl::StatusOr<const redisReply*> reply, const TenantLimits& limits) {
    Admission a;
    if (!reply.ok()) {
      a.status = absl::UnavailableError(
          absl::StrCat("tenant quotas unavailable (Redis): ", reply.status().message()));
      return a;
    }
    const redisReply* r = *reply;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
      a.status =
          absl::InternalError(r->type == REDIS_REPLY_ERROR
                                  ? absl::StrCat("tenant quotas: ", std::string(r->str, r->len))
                                  : std::string("tenant quotas: malformed reply from Redis"));
      return a;
    }
    const long long code = r->element[0]->integer;
    const long long value = r->elements > 1 ? r->element[1]->integer : 0;
    if (code == 1) {
      const absl::Duration wait = absl::Milliseconds(std::max<long long>(1, value));
      a.refusal = QuotaRefusal::kTokensPerMinute;
      a.status = WithRetryDelay(absl::ResourceExhaustedError(absl::StrCat(
                                    "this API key's tenant used its ", limits.tokens_per_minute,
                                    " tokens per minute; retry in ", absl::FormatDuration(wait))),
                                wait);
    } else if (code == 2) {
      a.refusal = QuotaRefusal::kConcurrentTurns;
      a.status =
          WithRetryDelay(absl::ResourceExhaustedError(absl::StrCat(
                             "this API key's tenant has ", value, " turns in flight, its limit (",
                             limits.max_concurrent_turns, " max_concurrent_turns); retry in ",
                             absl::FormatDuration(kTurnRetryDelay))),
                         kTurnRetryDelay);
    }
    return a;
  }

  const std::string prefix_;
  const std::unique_ptr<RedisClient> client_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TenantQuotas>> OpenRedisQuotas(const RedisQuotasOptions& options) {
  RedisClientOptions co;
  HC_ASSIGN_OR_RETURN(co.endpoint, ParseRedisUrl(options.url));
  co.connections = 1;
  co.timeout = options.timeout;
  for (const char* script : {kAdmitScript, kRenewScript, kEndScript, kChargeScript}) {
    co.scripts.push_back(absl::StrCat(kPrelude, script));
  }
  HC_ASSIGN_OR_RETURN(std::unique_ptr<RedisClient> client, RedisClient::Connect(std::move(co)));
  return std::unique_ptr<TenantQuotas>(new RedisQuotas(options.prefix, std::move(client)));
}

}  // namespace hc::router
