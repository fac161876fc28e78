#include "router/ledger/redis_ledger.h"

#include <hiredis.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <span>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/retry_delay.h"
#include "common/status_macros.h"
#include "common/token_hash.h"
#include "router/ledger/ledger_table.h"
#include "router/ledger/record_codec.h"
#include "router/ledger/redis_client.h"

namespace hc::router {
namespace {

// Every script runs with KEYS m t g z c [n] (the conversation's three keys,
// its salt's set, the committed set and, with a tenant, the tenant's set; see
// redis_ledger.h) and ARGV holder,
// clock offset (ms, 0 outside tests), id (its member of z), global member
// (its member of c), then its own arguments. Time is Redis's own (TIME), so
// routers with skewed clocks agree on lease expiry; expiries and scores use
// TIME without the offset, as PEXPIRE does.
constexpr const char* kPrelude = R"lua(
local function clock(offset)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(offset)
end
local function ms(x) return string.format('%d', x) end
local NEVER = 4000000000000000
-- Keeps a salt's set alive at least ttl ms more (0: never expires).
local function keep(key, ttl)
  if ttl == 0 then redis.call('PERSIST', key) return end
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ms(ttl)) end
end
-- A committed conversation under a turn: expires no earlier than the lease.
-- The live members of cap set `z` (members scored by expiry) once `member`
-- would join it: nil when `member` is already live there, when there is no
-- cap, or when the set has room; otherwise how many are live. Drops up to 64
-- expired members first.
local function full(z, member, cap, real)
  local s = redis.call('ZSCORE', z, member)
  if s and tonumber(s) > real then return nil end
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', ms(real), 'LIMIT', 0, 64)
  if #old > 0 then redis.call('ZREM', z, unpack(old)) end
  if cap <= 0 then return nil end
  local live = redis.call('ZCOUNT', z, '(' .. ms(real), '+inf')
  if live >= cap then return live end
  return nil
end
local function hold(real, ttl)
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ms(ttl), 'GT') end
  redis.call('ZADD', KEYS[4], 'GT', ms(real + ttl), ARGV[3])
  redis.call('ZADD', KEYS[5], 'GT', ms(real + ttl), ARGV[4])
  if KEYS[6] then redis.call('ZADD', KEYS[6], 'GT', ms(real + ttl), ARGV[4]) end
end
)lua";

// ARGV[5..8]: lease ttl ms, conversation ttl ms (0: none), salt cap, tenant
// cap (0: none).
// A lease-only hash (no committed round) expires with its lease, so a router
// killed during a first turn leaves nothing behind; its salt slot is reserved
// in z until then.
constexpr const char* kAcquireScript = R"lua(
local now, real = clock(ARGV[2]), clock(0)
local ttl, cttl, cap, tcap = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local h = redis.call('HMGET', KEYS[1], 'lh', 'le', 'r', 'w', 'la', 'u')
if h[1] and h[1] ~= ARGV[1] and tonumber(h[2]) > now then return {0, h[1]} end
local expired = 0
if h[3] then
  hold(real, ttl)
else
  -- Restarting a conversation that expired: it is counted here, as
  -- CountConversations would have.
  local gs = redis.call('ZSCORE', KEYS[5], ARGV[4])
  if gs and tonumber(gs) <= real then
    redis.call('ZREM', KEYS[5], ARGV[4])
    expired = 1
  end
  local live = full(KEYS[4], ARGV[3], cap, real)
  if live then return {2, live} end
  if KEYS[6] then
    live = full(KEYS[6], ARGV[4], tcap, real)
    if live then return {3, live} end
    redis.call('ZADD', KEYS[6], ms(real + ttl), ARGV[4])
    keep(KEYS[6], cttl > 0 and math.max(cttl, ttl) or 0)
  end
  redis.call('ZADD', KEYS[4], ms(real + ttl), ARGV[3])
  keep(KEYS[4], cttl > 0 and math.max(cttl, ttl) or 0)
end
local exp = ms(now + ttl)
redis.call('HSET', KEYS[1], 'lh', ARGV[1], 'le', exp)
if not h[3] then redis.call('PEXPIRE', KEYS[1], ms(ttl)) end
return {1, h[3] or '0', h[4] or '', h[5] or '', redis.call('GET', KEYS[2]) or '',
        redis.call('GET', KEYS[3]) or '', exp, expired, h[6] or ''}
)lua";

// ARGV[5..12]: expected round, tokens, messages, worker, token hash,
// conversation ttl ms, rewrite_from ('' : append), the round's usage (one
// record_codec Usage, kUsageBytes; its first byte 0: unknown). Idempotent: the last
// commit's holder (lc) and token hash (lx) are kept, so a resend of a commit
// that was applied (its reply lost) answers 3 (OK) without applying it again.
// A rewrite keeps the first rewrite_from tokens (4 bytes each) and the
// messages that end by then (the record_codec stream: u8 role, u32 begin,
// u32 end, u32 length, text), then appends, all in the one script: atomic.
// Past the committed tokens it answers {4, committed} and changes nothing.
// The usage is appended to the hash's u (one record per round), padded with
// unknown records for rounds committed without one (by an earlier version);
// a conversation that never had a usage gets no u while the usage is unknown.
static_assert(kUsageBytes == 13, "kCommitScript pads with 13-byte usage records");
constexpr const char* kCommitScript = R"lua(
local now, real, cttl = clock(ARGV[2]), clock(0), tonumber(ARGV[10])
local h = redis.call('HMGET', KEYS[1], 'lh', 'r', 'lc', 'lx')
local r = h[2] or '0'
if h[3] == ARGV[1] and h[4] == ARGV[9] and tonumber(r) == tonumber(ARGV[5]) + 1 then
  return {3, r}
end
if h[1] ~= ARGV[1] then return {1, ''} end
if r ~= ARGV[5] then return {2, r} end
if ARGV[11] == '' then
  redis.call('APPEND', KEYS[2], ARGV[6])
  redis.call('APPEND', KEYS[3], ARGV[7])
else
  local from = tonumber(ARGV[11])
  local t = redis.call('GET', KEYS[2]) or ''
  if from * 4 > #t then return {4, ms(#t / 4)} end
  local m = redis.call('GET', KEYS[3]) or ''
  local pos = 1
  while pos <= #m do
    local _, _, e, n, nxt = struct.unpack('<BI4I4I4', m, pos)
    if e > from then break end
    pos = nxt + n
  end
  redis.call('SET', KEYS[2], string.sub(t, 1, from * 4) .. ARGV[6])
  redis.call('SET', KEYS[3], string.sub(m, 1, pos - 1) .. ARGV[7])
end
local u = redis.call('HGET', KEYS[1], 'u')
if u or string.byte(ARGV[12], 1) == 1 then
  local n = tonumber(r)
  local keep = math.min(math.floor(#(u or '') / 13), n)
  u = string.sub(u or '', 1, keep * 13) .. string.rep('\0', (n - keep) * 13) .. ARGV[12]
  redis.call('HSET', KEYS[1], 'u', u)
end
redis.call('HSET', KEYS[1], 'r', ms(tonumber(r) + 1), 'w', ARGV[8], 'la', ms(now),
           'lc', ARGV[1], 'lx', ARGV[9])
redis.call('HDEL', KEYS[1], 'lh', 'le')
local score = NEVER
if cttl > 0 then
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ms(cttl)) end
  score = real + cttl
else
  for i = 1, 3 do redis.call('PERSIST', KEYS[i]) end
end
redis.call('ZADD', KEYS[4], ms(score), ARGV[3])
keep(KEYS[4], cttl)
redis.call('ZADD', KEYS[5], ms(score), ARGV[4])
if KEYS[6] then
  redis.call('ZADD', KEYS[6], ms(score), ARGV[4])
  keep(KEYS[6], cttl)
end
return {0, ''}
)lua";

// ARGV[5]: lease ttl ms.
constexpr const char* kRenewScript = R"lua(
local now, real, ttl = clock(ARGV[2]), clock(0), tonumber(ARGV[5])
local h = redis.call('HMGET', KEYS[1], 'lh', 'r')
if h[1] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'le', ms(now + ttl))
if h[2] then
  hold(real, ttl)
else
  redis.call('PEXPIRE', KEYS[1], ms(ttl))
  redis.call('ZADD', KEYS[4], ms(real + ttl), ARGV[3])
  if KEYS[6] then redis.call('ZADD', KEYS[6], ms(real + ttl), ARGV[4]) end
end
return 1
)lua";

constexpr const char* kReleaseScript = R"lua(
local h = redis.call('HMGET', KEYS[1], 'lh', 'r')
if h[1] ~= ARGV[1] then return 0 end
if not h[2] then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  redis.call('ZREM', KEYS[4], ARGV[3])
  if KEYS[6] then redis.call('ZREM', KEYS[6], ARGV[4]) end
else
  redis.call('HDEL', KEYS[1], 'lh', 'le')
end
return 1
)lua";

constexpr const char* kGetScript = R"lua(
local h = redis.call('HMGET', KEYS[1], 'r', 'w', 'la', 'lh', 'le', 'u')
if not h[1] then return {0} end
return {1, h[1], h[2] or '', h[3] or '', redis.call('GET', KEYS[2]) or '',
        redis.call('GET', KEYS[3]) or '', h[4] or '', h[5] or '0', h[6] or ''}
)lua";

constexpr const char* kDeleteScript = R"lua(
local h = redis.call('HMGET', KEYS[1], 'r', 'lh', 'le')
if not h[1] then return 1 end
if h[2] and tonumber(h[3]) > clock(ARGV[2]) then return 2 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[3])
redis.call('ZREM', KEYS[5], ARGV[4])
if KEYS[6] then redis.call('ZREM', KEYS[6], ARGV[4]) end
return 0
)lua";

// KEYS: c. Counts the live committed conversations and drops up to 1024
// expired members (Redis expired their keys): {live, dropped}. Each expired
// conversation is dropped once, by whichever router counts first.
constexpr const char* kCountScript = R"lua(
local real = clock(0)
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ms(real), 'LIMIT', 0, 1024)
if #old > 0 then redis.call('ZREM', KEYS[1], unpack(old)) end
return {redis.call('ZCOUNT', KEYS[1], '(' .. ms(real), '+inf'), #old}
)lua";

enum Script { kAcquire, kRenew, kCommit, kRelease, kGet, kDelete, kCount, kNumScripts };
constexpr const char* kScripts[kNumScripts] = {kAcquireScript, kRenewScript, kCommitScript,
                                               kReleaseScript, kGetScript,   kDeleteScript,
                                               kCountScript};

std::string_view SV(const redisReply* r) {
  return r->str != nullptr ? std::string_view(r->str, r->len) : std::string_view();
}
absl::string_view Str(const redisReply* r) {
  return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
                 r->type == REDIS_REPLY_ERROR
             ? absl::string_view(r->str, r->len)
             : absl::string_view();
}

absl::Status Malformed() { return absl::InternalError("malformed reply from Redis"); }

// A script's error reply (a bug or a server refusing it) as a status.
absl::StatusOr<const redisReply*> CheckReply(absl::StatusOr<const redisReply*> r) {
  if (r.ok() && (*r)->type == REDIS_REPLY_ERROR) {
    return absl::InternalError(absl::StrCat("redis: ", Str(*r)));
  }
  return r;
}

// `reply` holds the entry's round, worker, activity, tokens and messages at
// elements [first, first + 5) and its usage blob at element `usage`.
absl::Status ParseEntry(const redisReply* reply, size_t first, size_t usage,
                        ConversationRecord* rec) {
  const redisReply* round = reply->element[first];
  const redisReply* worker = reply->element[first + 1];
  const redisReply* activity = reply->element[first + 2];
  const redisReply* tokens = reply->element[first + 3];
  const redisReply* messages = reply->element[first + 4];
  if (!absl::SimpleAtoi(Str(round), &rec->round)) return Malformed();
  if (!Str(worker).empty()) {
    ByteReader r(SV(worker));
    if (!r.Worker(&rec->worker) || !r.done()) return Malformed();
  }
  int64_t la = 0;
  if (absl::SimpleAtoi(Str(activity), &la)) rec->last_activity = absl::FromUnixMillis(la);
  if (!DecodeRawTokens(SV(tokens), &rec->tokens) ||
      !DecodeMessageStream(SV(messages), &rec->messages) ||
      !DecodeUsageStream(SV(reply->element[usage]), &rec->usage) ||
      rec->usage.size() > rec->round) {
    return Malformed();
  }
  return absl::OkStatus();
}

absl::Status CapRefused(long long live, uint64_t cap) {
  return absl::ResourceExhaustedError(absl::StrCat("this cache_salt already has ", live,
                                                   " conversations, the most one salt may have "
                                                   "(--max_conversations_per_salt=",
                                                   cap, "); delete one or let idle ones expire"));
}

// *expired: 1 when the acquire found (and dropped) an expired conversation.
absl::StatusOr<ConversationRecord> ParseAcquire(absl::StatusOr<const redisReply*> reply,
                                                std::string_view holder, uint64_t cap,
                                                uint64_t tenant_cap, uint64_t* expired) {
  HC_ASSIGN_OR_RETURN(const redisReply* r, CheckReply(std::move(reply)));
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 1) return Malformed();
  if (r->element[0]->integer == 0) {
    return absl::AbortedError("a turn of this conversation is already in flight");
  }
  const long long live = r->elements > 1 ? r->element[1]->integer : 0;
  if (r->element[0]->integer == 2) return CapRefused(live, cap);
  if (r->element[0]->integer == 3) return TenantCapRefused(static_cast<uint64_t>(live), tenant_cap);
  if (r->elements != 9) return Malformed();
  *expired = static_cast<uint64_t>(std::max<long long>(0, r->element[7]->integer));
  ConversationRecord rec;
  HC_RETURN_IF_ERROR(ParseEntry(r, 1, 8, &rec));
  int64_t expiry = 0;
  if (!absl::SimpleAtoi(Str(r->element[6]), &expiry)) return Malformed();
  rec.lease = Lease{std::string(holder), absl::FromUnixMillis(expiry)};
  return rec;
}

absl::Status ParseRenew(absl::StatusOr<const redisReply*> reply) {
  HC_ASSIGN_OR_RETURN(const redisReply* r, CheckReply(std::move(reply)));
  if (r->type != REDIS_REPLY_INTEGER) return Malformed();
  if (r->integer == 0) return absl::AbortedError("the turn's lease expired and was taken over");
  return absl::OkStatus();
}

absl::Status ParseCommit(absl::StatusOr<const redisReply*> reply, uint64_t expected_round,
                         std::optional<uint32_t> rewrite_from) {
  HC_ASSIGN_OR_RETURN(const redisReply* r, CheckReply(std::move(reply)));
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) return Malformed();
  switch (r->element[0]->integer) {
    case 0:
    case 3:  // a resend of a commit that was applied (its reply was lost)
      return absl::OkStatus();
    case 1:
      return absl::AbortedError("the turn's lease expired and was taken over");
    case 4:
      return absl::InvalidArgumentError(absl::StrCat("a rewrite from token ", *rewrite_from,
                                                     " is past the conversation's ",
                                                     Str(r->element[1]), " committed tokens"));
    default:
      return absl::FailedPreconditionError(
          absl::StrCat("committed round is ", Str(r->element[1]), ", expected ", expected_round));
  }
}

absl::StatusOr<ConversationRecord> ParseGet(absl::StatusOr<const redisReply*> reply) {
  HC_ASSIGN_OR_RETURN(const redisReply* r, CheckReply(std::move(reply)));
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 1) return Malformed();
  if (r->element[0]->integer == 0) return absl::NotFoundError("unknown conversation");
  if (r->elements != 9) return Malformed();
  ConversationRecord rec;
  HC_RETURN_IF_ERROR(ParseEntry(r, 1, 8, &rec));
  int64_t expiry = 0;
  rec.lease.holder = std::string(Str(r->element[6]));
  if (!rec.lease.holder.empty() && absl::SimpleAtoi(Str(r->element[7]), &expiry)) {
    rec.lease.expiry = absl::FromUnixMillis(expiry);
  }
  return rec;
}

absl::Status ParseDelete(absl::StatusOr<const redisReply*> reply) {
  HC_ASSIGN_OR_RETURN(const redisReply* r, CheckReply(std::move(reply)));
  if (r->type != REDIS_REPLY_INTEGER) return Malformed();
  if (r->integer == 1) return absl::NotFoundError("unknown conversation");
  if (r->integer == 2) return absl::AbortedError("a turn of this conversation is in flight");
  return absl::OkStatus();
}

// {live, expired members dropped}.
absl::StatusOr<std::pair<uint64_t, uint64_t>> ParseCount(absl::StatusOr<const redisReply*> reply) {
  HC_ASSIGN_OR_RETURN(const redisReply* r, CheckReply(std::move(reply)));
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
      r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER) {
    return Malformed();
  }
  return std::make_pair(static_cast<uint64_t>(std::max<long long>(0, r->element[0]->integer)),
                        static_cast<uint64_t>(std::max<long long>(0, r->element[1]->integer)));
}

class RedisLedgerImpl final : public RedisLedger {
 public:
  RedisLedgerImpl(LedgerOptions o, RedisLedgerHooks hooks, std::unique_ptr<RedisClient> client)
      : options_(std::move(o)), hooks_(std::move(hooks)), client_(std::move(client)) {}

  uint64_t round_trips() const override { return client_->commands_sent(); }

  LedgerCounters counters() const override {
    return LedgerCounters{expired_.load(std::memory_order_relaxed),
                          refused_.load(std::memory_order_relaxed)};
  }

  void AcquireLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                    RecordCallback done) override {
    const uint64_t cap = options_.max_conversations_per_salt;
    const uint64_t tenant_cap = !key.tenant.empty() && options_.tenant_conversation_limit
                                    ? options_.tenant_conversation_limit(key.tenant)
                                    : 0;
    client_->Eval(
        kAcquire, Keys(key),
        Args(key, holder,
             {Millis(ttl), ConversationTtl(), absl::StrCat(cap), absl::StrCat(tenant_cap)}),
        /*retry_on_loss=*/true,
        [this, cap, tenant_cap, h = std::string(holder),
         d = std::move(done)](absl::StatusOr<const redisReply*> r) mutable {
          uint64_t expired = 0;
          absl::StatusOr<ConversationRecord> rec =
              ParseAcquire(std::move(r), h, cap, tenant_cap, &expired);
          if (absl::IsResourceExhausted(rec.status()) && !RetryDelayOf(rec.status())) {
            refused_.fetch_add(1, std::memory_order_relaxed);
          }
          expired_.fetch_add(expired, std::memory_order_relaxed);
          std::move(d)(std::move(rec));
        });
  }

  void RenewLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                  StatusCallback done) override {
    client_->Eval(kRenew, Keys(key), Args(key, holder, {Millis(ttl)}), /*retry_on_loss=*/true,
                  [d = std::move(done)](absl::StatusOr<const redisReply*> r) mutable {
                    std::move(d)(ParseRenew(std::move(r)));
                  });
  }

  // Resent once when the connection is lost before the reply: the script
  // recognises a resend of a commit it applied (same holder, round and token
  // hash) and answers OK without applying it twice.
  void Commit(const LedgerKey& key, std::string_view holder, CommitRequest commit,
              StatusCallback done) override {
    std::string tokens, messages, worker, usage;
    ByteWriter(&tokens).RawTokens(commit.appended_tokens);
    for (const LedgerMessage& m : commit.appended_messages) ByteWriter(&messages).Message(m);
    ByteWriter(&worker).Worker(commit.worker);
    ByteWriter(&usage).Usage(commit.usage);
    const uint64_t round = commit.expected_round;
    const uint64_t hash = TokenHash(std::span<const uint32_t>(commit.appended_tokens));
    client_->Eval(
        kCommit, Keys(key),
        Args(key, holder,
             {absl::StrCat(round), std::move(tokens), std::move(messages), std::move(worker),
              absl::StrCat(hash), ConversationTtl(),
              commit.rewrite_from.has_value() ? absl::StrCat(*commit.rewrite_from) : std::string(),
              std::move(usage)}),
        /*retry_on_loss=*/true,
        [round, from = commit.rewrite_from,
         d = std::move(done)](absl::StatusOr<const redisReply*> r) mutable {
          std::move(d)(ParseCommit(std::move(r), round, from));
        });
  }

  void ReleaseLease(const LedgerKey& key, std::string_view holder, StatusCallback done) override {
    client_->Eval(kRelease, Keys(key), Args(key, holder, {}), /*retry_on_loss=*/true,
                  [d = std::move(done)](absl::StatusOr<const redisReply*> r) mutable {
                    std::move(d)(CheckReply(std::move(r)).status());
                  });
  }

  void Get(const LedgerKey& key, RecordCallback done) override {
    std::vector<std::string> keys = Keys(key);
    keys.resize(3);
    client_->Eval(kGet, std::move(keys), {}, /*retry_on_loss=*/true,
                  [d = std::move(done)](absl::StatusOr<const redisReply*> r) mutable {
                    std::move(d)(ParseGet(std::move(r)));
                  });
  }

  void Delete(const LedgerKey& key, StatusCallback done) override {
    client_->Eval(kDelete, Keys(key), Args(key, "", {}), /*retry_on_loss=*/false,
                  [d = std::move(done)](absl::StatusOr<const redisReply*> r) mutable {
                    std::move(d)(ParseDelete(std::move(r)));
                  });
  }

  void CountConversations(CountCallback done) override {
    client_->Eval(kCount, {CommittedKey()}, {}, /*retry_on_loss=*/true,
                  [this, d = std::move(done)](absl::StatusOr<const redisReply*> r) mutable {
                    absl::StatusOr<std::pair<uint64_t, uint64_t>> n = ParseCount(std::move(r));
                    if (!n.ok()) return std::move(d)(n.status());
                    expired_.fetch_add(n->second, std::memory_order_relaxed);
                    std::move(d)(n->first);
                  });
  }

 private:
  // The salt's namespace: S, or with a tenant tT/S (T: hex tenant), which
  // cannot collide with a bare hex salt (redis_ledger.h).
  static std::string Namespace(const LedgerKey& key) {
    const std::string salt = absl::BytesToHexString(key.cache_salt);
    if (key.tenant.empty()) return salt;
    return absl::StrCat("t", absl::BytesToHexString(key.tenant), "/", salt);
  }
  // m t g z c, and n with a tenant (redis_ledger.h).
  std::vector<std::string> Keys(const LedgerKey& key) const {
    const std::string ns = Namespace(key);
    const std::string base =
        absl::StrCat(options_.redis_prefix, ":{", ns, ":", key.conversation_id, "}:");
    std::vector<std::string> keys = {base + "m", base + "t", base + "g",
                                     absl::StrCat(options_.redis_prefix, ":{", ns, "}:z"),
                                     CommittedKey()};
    if (!key.tenant.empty()) {
      keys.push_back(
          absl::StrCat(options_.redis_prefix, ":{t", absl::BytesToHexString(key.tenant), "}:n"));
    }
    return keys;
  }
  std::vector<std::string> Args(const LedgerKey& key, std::string_view holder,
                                std::vector<std::string> more) const {
    std::vector<std::string> args = {std::string(holder), ClockOffset(), key.conversation_id,
                                     absl::StrCat(Namespace(key), ":", key.conversation_id)};
    for (std::string& a : more) args.push_back(std::move(a));
    return args;
  }
  std::string CommittedKey() const { return options_.redis_prefix + ":c"; }
  std::string ClockOffset() const {
    return hooks_.clock_offset ? absl::StrCat(absl::ToInt64Milliseconds(hooks_.clock_offset()))
                               : "0";
  }
  std::string ConversationTtl() const {
    return options_.conversation_ttl > absl::ZeroDuration() ? Millis(options_.conversation_ttl)
                                                            : "0";
  }
  static std::string Millis(absl::Duration d) {
    return absl::StrCat(std::max<int64_t>(1, absl::ToInt64Milliseconds(d)));
  }

  const LedgerOptions options_;
  const RedisLedgerHooks hooks_;
  const std::unique_ptr<RedisClient> client_;
  std::atomic<uint64_t> expired_{0};
  std::atomic<uint64_t> refused_{0};
};

}  // namespace

absl::StatusOr<std::unique_ptr<RedisLedger>> OpenRedisLedger(const LedgerOptions& options,
                                                             RedisLedgerHooks hooks) {
  RedisClientOptions co;
  HC_ASSIGN_OR_RETURN(co.endpoint, ParseRedisUrl(options.backend));
  co.connections = options.redis_connections;
  co.timeout = options.redis_timeout;
  for (const char* script : kScripts) co.scripts.push_back(absl::StrCat(kPrelude, script));
  if (hooks.lose_commit_reply) {
    co.lose_reply = [lose = hooks.lose_commit_reply](int script) {
      return script == kCommit && lose();
    };
  }
  HC_ASSIGN_OR_RETURN(std::unique_ptr<RedisClient> client, RedisClient::Connect(std::move(co)));
  return std::unique_ptr<RedisLedger>(
      new RedisLedgerImpl(options, std::move(hooks), std::move(client)));
}

}  // namespace hc::router
