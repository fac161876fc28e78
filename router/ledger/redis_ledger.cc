#include "router/ledger/redis_ledger.h"

#include <hiredis.h>

#include <atomic>
#include <cstdlib>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "router/ledger/record_codec.h"

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

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

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

class RedisLedgerImpl final : public RedisLedger {
 public:
  RedisLedgerImpl(LedgerOptions o, std::string host, int port, int db)
      : options_(std::move(o)),
        clock_(options_.clock ? options_.clock : Clock([] { return absl::Now(); })),
        host_(std::move(host)), port_(port), db_(db),
        conns_(static_cast<size_t>(std::max(1, options_.redis_connections))) {}
  ~RedisLedgerImpl() override {
    for (Conn& c : conns_) {
      absl::MutexLock lock(&c.mu);
      if (c.ctx != nullptr) redisFree(c.ctx);
    }
  }

  absl::Status Connect() {
    for (Conn& c : conns_) {
      absl::MutexLock lock(&c.mu);
      HC_RETURN_IF_ERROR(ConnectLocked(c));
    }
    return absl::OkStatus();
  }

  uint64_t round_trips() const override { return round_trips_.load(std::memory_order_relaxed); }

  // Asynchronous forms: for now each runs its round trip on the calling
  // thread (see the header).
  void AcquireLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                    RecordCallback done) override {
    std::move(done)(AcquireLeaseNow(key, holder, ttl));
  }
  void RenewLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                  StatusCallback done) override {
    std::move(done)(RenewLeaseNow(key, holder, ttl));
  }
  void Commit(const LedgerKey& key, std::string_view holder, CommitRequest commit,
              StatusCallback done) override {
    std::move(done)(CommitNow(key, holder, commit));
  }
  void ReleaseLease(const LedgerKey& key, std::string_view holder, StatusCallback done) override {
    std::move(done)(ReleaseLeaseNow(key, holder));
  }
  void Get(const LedgerKey& key, RecordCallback done) override { std::move(done)(GetNow(key)); }
  void Delete(const LedgerKey& key, StatusCallback done) override {
    std::move(done)(DeleteNow(key));
  }
  void CountConversations(CountCallback done) override {
    std::move(done)(CountConversationsNow());
  }

  absl::Status RenewLeaseNow(const LedgerKey& key, std::string_view holder, absl::Duration ttl) {
    const Keys k = MakeKeys(key);
    const std::string now = absl::StrCat(ToMillis(clock_()));
    const std::string ttl_ms = absl::StrCat(std::max<int64_t>(1, absl::ToInt64Milliseconds(ttl)));
    HC_ASSIGN_OR_RETURN(Reply r, Eval(kRenew, {k.m}, {holder, now, ttl_ms}, /*idempotent=*/true));
    if (r->type != REDIS_REPLY_INTEGER) return Malformed();
    if (r->integer == 0) return absl::AbortedError("the turn's lease expired and was taken over");
    return absl::OkStatus();
  }

  absl::StatusOr<ConversationRecord> AcquireLeaseNow(const LedgerKey& key, std::string_view holder,
                                                     absl::Duration ttl) {
    const Keys k = MakeKeys(key);
    const std::string now = absl::StrCat(ToMillis(clock_()));
    const std::string ttl_ms = absl::StrCat(std::max<int64_t>(1, absl::ToInt64Milliseconds(ttl)));
    HC_ASSIGN_OR_RETURN(Reply r, Eval(kAcquire, {k.m, k.t, k.g}, {holder, now, ttl_ms},
                                      /*idempotent=*/true));
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

  absl::Status CommitNow(const LedgerKey& key, std::string_view holder,
                         const CommitRequest& commit) {
    const Keys k = MakeKeys(key);
    std::string tokens, messages, worker;
    ByteWriter(&tokens).RawTokens(commit.appended_tokens);
    for (const LedgerMessage& m : commit.appended_messages) ByteWriter(&messages).Message(m);
    ByteWriter(&worker).Worker(commit.worker);
    const std::string round = absl::StrCat(commit.expected_round);
    const std::string now = absl::StrCat(ToMillis(clock_()));
    HC_ASSIGN_OR_RETURN(Reply r, Eval(kCommit, {k.m, k.t, k.g, CountKey()},
                                      {holder, round, tokens, messages, worker, now},
                                      /*idempotent=*/false));
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) return Malformed();
    switch (r->element[0]->integer) {
      case 0: return absl::OkStatus();
      case 1: return absl::AbortedError("the turn's lease expired and was taken over");
      default:
        return absl::FailedPreconditionError(absl::StrCat(
            "committed round is ", Str(r->element[1]), ", expected ", commit.expected_round));
    }
  }

  absl::Status ReleaseLeaseNow(const LedgerKey& key, std::string_view holder) {
    const Keys k = MakeKeys(key);
    return Eval(kRelease, {k.m, k.t, k.g}, {holder}, /*idempotent=*/true).status();
  }

  absl::StatusOr<ConversationRecord> GetNow(const LedgerKey& key) {
    const Keys k = MakeKeys(key);
    HC_ASSIGN_OR_RETURN(Reply r, Eval(kGet, {k.m, k.t, k.g}, {}, /*idempotent=*/true));
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

  absl::Status DeleteNow(const LedgerKey& key) {
    const Keys k = MakeKeys(key);
    const std::string now = absl::StrCat(ToMillis(clock_()));
    HC_ASSIGN_OR_RETURN(Reply r, Eval(kDelete, {k.m, k.t, k.g, CountKey()}, {now},
                                      /*idempotent=*/false));
    if (r->type != REDIS_REPLY_INTEGER) return Malformed();
    if (r->integer == 1) return absl::NotFoundError("unknown conversation");
    if (r->integer == 2) return absl::AbortedError("a turn of this conversation is in flight");
    return absl::OkStatus();
  }

  absl::StatusOr<uint64_t> CountConversationsNow() {
    const std::string key = CountKey();
    HC_ASSIGN_OR_RETURN(Reply r, Command({"GET", key}, /*idempotent=*/true));
    if (r->type == REDIS_REPLY_NIL) return 0;
    int64_t n = 0;
    if (!absl::SimpleAtoi(Str(r.get()), &n)) return Malformed();
    return static_cast<uint64_t>(std::max<int64_t>(0, n));
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
  static absl::Status Malformed() { return absl::InternalError("malformed reply from Redis"); }

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

  // One connection of the pool; calls on it are serialised by its mutex.
  struct Conn {
    absl::Mutex mu;
    redisContext* ctx ABSL_GUARDED_BY(mu) = nullptr;
    std::string sha[kNumScripts] ABSL_GUARDED_BY(mu);
  };

  Conn& PickConn() {
    return conns_[next_conn_.fetch_add(1, std::memory_order_relaxed) % conns_.size()];
  }

  absl::Status ConnectLocked(Conn& conn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(conn.mu) {
    if (conn.ctx != nullptr) {
      redisFree(conn.ctx);
      conn.ctx = nullptr;
    }
    const absl::Duration t = options_.redis_timeout;
    const timeval tv{static_cast<time_t>(absl::ToInt64Seconds(t)),
                     static_cast<suseconds_t>(absl::ToInt64Microseconds(t) % 1000000)};
    redisContext* c = redisConnectWithTimeout(host_.c_str(), port_, tv);
    if (c == nullptr || c->err) {
      const std::string err = c ? c->errstr : "out of memory";
      if (c) redisFree(c);
      return absl::UnavailableError(absl::StrCat("redis ", host_, ":", port_, ": ", err));
    }
    redisSetTimeout(c, tv);
    conn.ctx = c;
    if (db_ != 0) {
      const std::string db = absl::StrCat(db_);
      HC_ASSIGN_OR_RETURN(Reply r, RawLocked(conn, {"SELECT", db}));
      if (r->type == REDIS_REPLY_ERROR) return absl::InvalidArgumentError(std::string(Str(r.get())));
    }
    for (int i = 0; i < kNumScripts; ++i) {
      HC_ASSIGN_OR_RETURN(Reply r, RawLocked(conn, {"SCRIPT", "LOAD", kScripts[i]}));
      if (r->type != REDIS_REPLY_STRING) {
        return absl::InternalError(absl::StrCat("SCRIPT LOAD failed: ", Str(r.get())));
      }
      conn.sha[i] = std::string(Str(r.get()));
    }
    return absl::OkStatus();
  }

  // One command on the current connection; UNAVAILABLE (and the connection
  // dropped) on an I/O error.
  absl::StatusOr<Reply> RawLocked(Conn& conn, const std::vector<std::string_view>& args)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(conn.mu) {
    if (conn.ctx == nullptr) return absl::UnavailableError("not connected to redis");
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (std::string_view a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    round_trips_.fetch_add(1, std::memory_order_relaxed);
    auto* reply = static_cast<redisReply*>(
        redisCommandArgv(conn.ctx, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (reply == nullptr) {
      const std::string err = conn.ctx->errstr;
      redisFree(conn.ctx);
      conn.ctx = nullptr;
      return absl::UnavailableError(absl::StrCat("redis: ", err));
    }
    return Reply(reply);
  }

  // Runs a command, reconnecting first when needed; an idempotent command is
  // retried once after a connection error.
  absl::StatusOr<Reply> Command(const std::vector<std::string_view>& args, bool idempotent) {
    Conn& conn = PickConn();
    absl::MutexLock lock(&conn.mu);
    for (int attempt = 0;; ++attempt) {
      absl::Status s = conn.ctx == nullptr ? ConnectLocked(conn) : absl::OkStatus();
      absl::StatusOr<Reply> r = s.ok() ? RawLocked(conn, args) : absl::StatusOr<Reply>(s);
      if (r.ok() || !idempotent || attempt >= 1) return r;
    }
  }

  absl::StatusOr<Reply> Eval(Script script, const std::vector<std::string>& keys,
                             const std::vector<std::string_view>& args, bool idempotent) {
    Conn& conn = PickConn();
    absl::MutexLock lock(&conn.mu);
    for (int attempt = 0;; ++attempt) {
      absl::Status s = conn.ctx == nullptr ? ConnectLocked(conn) : absl::OkStatus();
      absl::StatusOr<Reply> r;
      if (s.ok()) {
        const std::string nkeys = absl::StrCat(keys.size());
        std::vector<std::string_view> argv = {"EVALSHA", conn.sha[script], nkeys};
        for (const std::string& k : keys) argv.push_back(k);
        for (std::string_view a : args) argv.push_back(a);
        r = RawLocked(conn, argv);
        if (r.ok() && (*r)->type == REDIS_REPLY_ERROR) {
          const std::string err(Str(r->get()));
          if (absl::StartsWith(err, "NOSCRIPT") && attempt == 0) {
            // Redis restarted or flushed its scripts: load them again.
            if (s = ConnectLocked(conn); s.ok()) continue;
            return s;
          }
          return absl::InternalError(absl::StrCat("redis: ", err));
        }
      } else {
        r = s;
      }
      if (r.ok() || !idempotent || attempt >= 1) return r;
    }
  }

  const LedgerOptions options_;
  const Clock clock_;
  const std::string host_;
  const int port_;
  const int db_;
  std::atomic<uint64_t> round_trips_{0};
  std::atomic<uint64_t> next_conn_{0};
  std::vector<Conn> conns_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RedisLedger>> OpenRedisLedger(const LedgerOptions& options) {
  absl::string_view url = options.backend;
  if (!absl::ConsumePrefix(&url, "redis://")) {
    return absl::InvalidArgumentError(absl::StrCat("not a redis:// URL: ", options.backend));
  }
  int db = 0;
  if (const size_t slash = url.find('/'); slash != absl::string_view::npos) {
    if (!absl::SimpleAtoi(url.substr(slash + 1), &db)) {
      return absl::InvalidArgumentError(absl::StrCat("bad redis db in ", options.backend));
    }
    url = url.substr(0, slash);
  }
  const size_t colon = url.rfind(':');
  int port = 6379;
  std::string host(url);
  if (colon != absl::string_view::npos) {
    host = std::string(url.substr(0, colon));
    if (!absl::SimpleAtoi(url.substr(colon + 1), &port)) {
      return absl::InvalidArgumentError(absl::StrCat("bad redis port in ", options.backend));
    }
  }
  if (host.empty()) return absl::InvalidArgumentError("redis URL without a host");
  auto ledger = std::make_unique<RedisLedgerImpl>(options, host, port, db);
  HC_RETURN_IF_ERROR(ledger->Connect());
  return std::unique_ptr<RedisLedger>(std::move(ledger));
}

}  // namespace hc::router
