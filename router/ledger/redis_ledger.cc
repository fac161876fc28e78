#include "router/ledger/redis_ledger.h"

#include <hiredis.h>

#include <algorithm>
#include <iterator>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "router/ledger/record_codec.h"
#include "router/ledger/redis_client.h"

namespace hc::router {
namespace {

// KEYS: m t g. ARGV: holder now_ms ttl_ms.
constexpr const char* kAcquireScript = R"lua(
local h = redis.call('HMGET', KEYS[1], 'lh', 'le', 'r', 'w', 'la')
if h[1] and h[1] ~= ARGV[1] and tonumber(h[2]) > tonumber(ARGV[2]) then
  return {0, h[1]}
end
local exp = string.format('%d', tonumber(ARGV[2]) + tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'lh', ARGV[1], 'le', exp)
return {1, h[3] or '0', h[4] or '', h[5] or '', redis.call('GET', KEYS[2]) or '',
        redis.call('GET', KEYS[3]) or '', exp}
)lua";

// KEYS: m t g count. ARGV: holder expected_round tokens messages worker now_ms.
constexpr const char* kCommitScript = R"lua(
local h = redis.call('HMGET', KEYS[1], 'lh', 'r')
if h[1] ~= ARGV[1] then return {1, ''} end
local r = h[2] or '0'
if r ~= ARGV[2] then return {2, r} end
redis.call('APPEND', KEYS[2], ARGV[3])
redis.call('APPEND', KEYS[3], ARGV[4])
redis.call('HSET', KEYS[1], 'r', string.format('%d', tonumber(r) + 1), 'w', ARGV[5], 'la', ARGV[6])
redis.call('HDEL', KEYS[1], 'lh', 'le')
if r == '0' then redis.call('INCR', KEYS[4]) end
return {0, ''}
)lua";

// KEYS: m. ARGV: holder now_ms ttl_ms.
constexpr const char* kRenewScript = R"lua(
if redis.call('HGET', KEYS[1], 'lh') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'le', string.format('%d', tonumber(ARGV[2]) + tonumber(ARGV[3])))
return 1
)lua";

// KEYS: m t g. ARGV: holder.
constexpr const char* kReleaseScript = R"lua(
local h = redis.call('HMGET', KEYS[1], 'lh', 'r')
if h[1] ~= ARGV[1] then return 0 end
if not h[2] then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
else
  redis.call('HDEL', KEYS[1], 'lh', 'le')
end
return 1
)lua";

// KEYS: m t g.
constexpr const char* kGetScript = R"lua(
local h = redis.call('HMGET', KEYS[1], 'r', 'w', 'la', 'lh', 'le')
if not h[1] then return {0} end
return {1, h[1], h[2] or '', h[3] or '', redis.call('GET', KEYS[2]) or '',
        redis.call('GET', KEYS[3]) or '', h[4] or '', h[5] or '0'}
)lua";

// KEYS: m t g count. ARGV: now_ms.
constexpr const char* kDeleteScript = R"lua(
local h = redis.call('HMGET', KEYS[1], 'r', 'lh', 'le')
if not h[1] then return 1 end
if h[2] and tonumber(h[3]) > tonumber(ARGV[1]) then return 2 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('DECR', KEYS[4])
return 0
)lua";

enum Script { kAcquire, kRenew, kCommit, kRelease, kGet, kDelete, kNumScripts };
constexpr const char* kScripts[kNumScripts] = {kAcquireScript, kRenewScript,  kCommitScript,
                                               kReleaseScript, kGetScript,    kDeleteScript};

std::string_view SV(const redisReply* r) {
  return r->str != nullptr ? std::string_view(r->str, r->len) : std::string_view();
}
absl::string_view Str(const redisReply* r) {
  return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
                 r->type == REDIS_REPLY_ERROR
             ? absl::string_view(r->str, r->len)
             : absl::string_view();
}

int64_t ToMillis(absl::Time t) { return absl::ToUnixMillis(t); }

absl::Status Malformed() { return absl::InternalError("malformed reply from Redis"); }

// A script's error reply (a bug or a server refusing it) as a status.
absl::StatusOr<const redisReply*> CheckReply(absl::StatusOr<const redisReply*> r) {
  if (r.ok() && (*r)->type == REDIS_REPLY_ERROR) {
    return absl::InternalError(absl::StrCat("redis: ", Str(*r)));
  }
  return r;
}

absl::Status ParseEntry(const redisReply* round, const redisReply* worker,
                        const redisReply* activity, const redisReply* tokens,
                        const redisReply* messages, ConversationRecord* rec) {
  if (!absl::SimpleAtoi(Str(round), &rec->round)) return Malformed();
  if (!Str(worker).empty()) {
    ByteReader r(SV(worker));
    if (!r.Worker(&rec->worker) || !r.done()) return Malformed();
  }
  int64_t la = 0;
  if (absl::SimpleAtoi(Str(activity), &la)) rec->last_activity = absl::FromUnixMillis(la);
  if (!DecodeRawTokens(SV(tokens), &rec->tokens) ||
      !DecodeMessageStream(SV(messages), &rec->messages)) {
    return Malformed();
  }
  return absl::OkStatus();
}

absl::StatusOr<ConversationRecord> ParseAcquire(absl::StatusOr<const redisReply*> reply,
                                                std::string_view holder) {
  HC_ASSIGN_OR_RETURN(const redisReply* r, CheckReply(std::move(reply)));
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 1) return Malformed();
  if (r->element[0]->integer == 0) {
    return absl::AbortedError("a turn of this conversation is already in flight");
  }
  if (r->elements != 7) return Malformed();
  ConversationRecord rec;
  HC_RETURN_IF_ERROR(ParseEntry(r->element[1], r->element[2], r->element[3], r->element[4],
                                r->element[5], &rec));
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

absl::Status ParseCommit(absl::StatusOr<const redisReply*> reply, uint64_t expected_round) {
  HC_ASSIGN_OR_RETURN(const redisReply* r, CheckReply(std::move(reply)));
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) return Malformed();
  switch (r->element[0]->integer) {
    case 0: return absl::OkStatus();
    case 1: return absl::AbortedError("the turn's lease expired and was taken over");
    default:
      return absl::FailedPreconditionError(absl::StrCat(
          "committed round is ", Str(r->element[1]), ", expected ", expected_round));
  }
}

absl::StatusOr<ConversationRecord> ParseGet(absl::StatusOr<const redisReply*> reply) {
  HC_ASSIGN_OR_RETURN(const redisReply* r, CheckReply(std::move(reply)));
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 1) return Malformed();
  if (r->element[0]->integer == 0) return absl::NotFoundError("unknown conversation");
  if (r->elements != 8) return Malformed();
  ConversationRecord rec;
  HC_RETURN_IF_ERROR(ParseEntry(r->element[1], r->element[2], r->element[3], r->element[4],
                                r->element[5], &rec));
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

absl::StatusOr<uint64_t> ParseCount(absl::StatusOr<const redisReply*> reply) {
  HC_ASSIGN_OR_RETURN(const redisReply* r, CheckReply(std::move(reply)));
  if (r->type == REDIS_REPLY_NIL) return 0;
  int64_t n = 0;
  if (!absl::SimpleAtoi(Str(r), &n)) return Malformed();
  return static_cast<uint64_t>(std::max<int64_t>(0, n));
}

class RedisLedgerImpl final : public RedisLedger {
 public:
  RedisLedgerImpl(LedgerOptions o, std::unique_ptr<RedisClient> client)
      : options_(std::move(o)), clock_(options_.clock), client_(std::move(client)) {}

  uint64_t round_trips() const override { return client_->commands_sent(); }

  void AcquireLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                    RecordCallback done) override {
    Keys k = MakeKeys(key);
    client_->Eval(kAcquire, {std::move(k.m), std::move(k.t), std::move(k.g)},
                  {std::string(holder), Now(), TtlMillis(ttl)}, /*retry_on_loss=*/true,
                  [h = std::string(holder), d = std::move(done)](
                      absl::StatusOr<const redisReply*> r) mutable {
                    std::move(d)(ParseAcquire(std::move(r), h));
                  });
  }

  void RenewLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                  StatusCallback done) override {
    Keys k = MakeKeys(key);
    client_->Eval(kRenew, {std::move(k.m)}, {std::string(holder), Now(), TtlMillis(ttl)},
                  /*retry_on_loss=*/true,
                  [d = std::move(done)](absl::StatusOr<const redisReply*> r) mutable {
                    std::move(d)(ParseRenew(std::move(r)));
                  });
  }

  void Commit(const LedgerKey& key, std::string_view holder, CommitRequest commit,
              StatusCallback done) override {
    Keys k = MakeKeys(key);
    std::string tokens, messages, worker;
    ByteWriter(&tokens).RawTokens(commit.appended_tokens);
    for (const LedgerMessage& m : commit.appended_messages) ByteWriter(&messages).Message(m);
    ByteWriter(&worker).Worker(commit.worker);
    const uint64_t round = commit.expected_round;
    client_->Eval(kCommit, {std::move(k.m), std::move(k.t), std::move(k.g), CountKey()},
                  {std::string(holder), absl::StrCat(round), std::move(tokens),
                   std::move(messages), std::move(worker), Now()},
                  /*retry_on_loss=*/false,
                  [round, d = std::move(done)](absl::StatusOr<const redisReply*> r) mutable {
                    std::move(d)(ParseCommit(std::move(r), round));
                  });
  }

  void ReleaseLease(const LedgerKey& key, std::string_view holder, StatusCallback done) override {
    Keys k = MakeKeys(key);
    client_->Eval(kRelease, {std::move(k.m), std::move(k.t), std::move(k.g)},
                  {std::string(holder)}, /*retry_on_loss=*/true,
                  [d = std::move(done)](absl::StatusOr<const redisReply*> r) mutable {
                    std::move(d)(CheckReply(std::move(r)).status());
                  });
  }

  void Get(const LedgerKey& key, RecordCallback done) override {
    Keys k = MakeKeys(key);
    client_->Eval(kGet, {std::move(k.m), std::move(k.t), std::move(k.g)}, {},
                  /*retry_on_loss=*/true,
                  [d = std::move(done)](absl::StatusOr<const redisReply*> r) mutable {
                    std::move(d)(ParseGet(std::move(r)));
                  });
  }

  void Delete(const LedgerKey& key, StatusCallback done) override {
    Keys k = MakeKeys(key);
    client_->Eval(kDelete, {std::move(k.m), std::move(k.t), std::move(k.g), CountKey()}, {Now()},
                  /*retry_on_loss=*/false,
                  [d = std::move(done)](absl::StatusOr<const redisReply*> r) mutable {
                    std::move(d)(ParseDelete(std::move(r)));
                  });
  }

  void CountConversations(CountCallback done) override {
    client_->Command({"GET", CountKey()}, /*retry_on_loss=*/true,
                     [d = std::move(done)](absl::StatusOr<const redisReply*> r) mutable {
                       std::move(d)(ParseCount(std::move(r)));
                     });
  }

 private:
  struct Keys {
    std::string m, t, g;
  };
  Keys MakeKeys(const LedgerKey& key) const {
    const std::string base = absl::StrCat(options_.redis_prefix, ":{",
                                          absl::BytesToHexString(key.cache_salt), ":",
                                          key.conversation_id, "}:");
    return Keys{base + "m", base + "t", base + "g"};
  }
  std::string CountKey() const { return options_.redis_prefix + ":count"; }
  std::string Now() const { return absl::StrCat(ToMillis(clock_ ? clock_() : absl::Now())); }
  static std::string TtlMillis(absl::Duration ttl) {
    return absl::StrCat(std::max<int64_t>(1, absl::ToInt64Milliseconds(ttl)));
  }

  const LedgerOptions options_;
  const Clock clock_;
  const std::unique_ptr<RedisClient> client_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RedisLedger>> OpenRedisLedger(const LedgerOptions& options) {
  RedisClientOptions co;
  HC_ASSIGN_OR_RETURN(co.endpoint, ParseRedisUrl(options.backend));
  co.connections = options.redis_connections;
  co.timeout = options.redis_timeout;
  co.scripts.assign(std::begin(kScripts), std::end(kScripts));
  HC_ASSIGN_OR_RETURN(std::unique_ptr<RedisClient> client, RedisClient::Connect(std::move(co)));
  return std::unique_ptr<RedisLedger>(new RedisLedgerImpl(options, std::move(client)));
}

}  // namespace hc::router
