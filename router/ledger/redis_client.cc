#include "router/ledger/redis_client.h"

#include <async.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"

namespace hc::router {

absl::StatusOr<RedisEndpoint> ParseRedisUrl(std::string_view url_in) {
  absl::string_view url(url_in.data(), url_in.size());
  if (absl::StartsWith(url, "rediss://")) {
    return absl::UnimplementedError(
        "rediss:// (TLS) is not supported: hiredis 0.14 has no TLS; use redis:// over a trusted "
        "network or a TLS tunnel (e.g. stunnel) on loopback");
  }
  if (!absl::ConsumePrefix(&url, "redis://")) {
    return absl::InvalidArgumentError(absl::StrCat("not a redis:// URL: ", std::string(url_in)));
  }
  RedisEndpoint e;
  if (const size_t at = url.rfind('@'); at != absl::string_view::npos) {
    const absl::string_view cred = url.substr(0, at);
    url = url.substr(at + 1);
    if (const size_t colon = cred.find(':'); colon != absl::string_view::npos) {
      e.user = std::string(cred.substr(0, colon));
      e.password = std::string(cred.substr(colon + 1));
    } else {
      e.password = std::string(cred);
    }
  }
  if (const size_t slash = url.find('/'); slash != absl::string_view::npos) {
    if (!absl::SimpleAtoi(url.substr(slash + 1), &e.db) || e.db < 0) {
      return absl::InvalidArgumentError(absl::StrCat("bad redis db in ", std::string(url_in)));
    }
    url = url.substr(0, slash);
  }
  e.host = std::string(url);
  if (const size_t colon = url.rfind(':'); colon != absl::string_view::npos) {
    e.host = std::string(url.substr(0, colon));
    if (!absl::SimpleAtoi(url.substr(colon + 1), &e.port) || e.port <= 0 || e.port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("bad redis port in ", std::string(url_in)));
    }
  }
  if (e.host.empty()) return absl::InvalidArgumentError("redis URL without a host");
  return e;
}

namespace {

constexpr absl::Duration kMinBackoff = absl::Milliseconds(50);
constexpr absl::Duration kMaxBackoff = absl::Seconds(2);

absl::string_view ReplyText(const redisReply* r) {
  return r->str != nullptr ? absl::string_view(r->str, r->len) : absl::string_view();
}

class RedisClientImpl final : public RedisClient {
 public:
  explicit RedisClientImpl(RedisClientOptions o) : options_(std::move(o)) {
    conns_.resize(static_cast<size_t>(std::max(1, options_.connections)));
    for (size_t i = 0; i < conns_.size(); ++i) conns_[i].client = this;
    shas_.resize(options_.scripts.size());
  }

  ~RedisClientImpl() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    Wake();
    if (loop_.joinable()) loop_.join();
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  absl::Status Start() {
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_fd_ < 0 || wake_fd_ < 0) {
      return absl::InternalError(absl::StrCat("epoll/eventfd: ", std::strerror(errno)));
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // the wake-up fd
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
    loop_ = std::thread([this] { Loop(); });
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](RedisClientImpl* c) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return c->ready_once_ || c->failed_attempts_ >= static_cast<int>(c->conns_.size());
        },
        this));
    if (ready_once_) return absl::OkStatus();
    return first_error_;
  }

  void Eval(int script, std::vector<std::string> keys, std::vector<std::string> args,
            bool retry_on_loss, ReplyCallback done) override {
    auto op = std::make_shared<Op>();
    op->script = script;
    op->args.reserve(1 + keys.size() + args.size());
    op->args.push_back(absl::StrCat(keys.size()));
    for (std::string& k : keys) op->args.push_back(std::move(k));
    for (std::string& a : args) op->args.push_back(std::move(a));
    op->retry_on_loss = retry_on_loss;
    op->done = std::move(done);
    Submit(std::move(op));
  }

  void Command(std::vector<std::string> argv, bool retry_on_loss, ReplyCallback done) override {
    auto op = std::make_shared<Op>();
    op->args = std::move(argv);
    op->retry_on_loss = retry_on_loss;
    op->done = std::move(done);
    Submit(std::move(op));
  }

  uint64_t commands_sent() const override { return sent_.load(std::memory_order_relaxed); }

 private:
  struct Op {
    int script = -1;                // EVALSHA of this script, or -1: args is the command
    std::vector<std::string> args;  // EVALSHA: numkeys, keys, args
    bool retry_on_loss = false;
    int losses = 0;
    bool noscript_resent = false;
    bool finished = false;
    absl::Time deadline;
    redisAsyncContext* sent_on = nullptr;  // the context it was last written to
    ReplyCallback done;
  };
  using OpPtr = std::shared_ptr<Op>;

  enum class State { kDown, kConnecting, kReady };
  // One connection; loop thread only.
  struct Conn {
    RedisClientImpl* client = nullptr;
    redisAsyncContext* ac = nullptr;
    State state = State::kDown;
    int fd = -1;
    uint32_t mask = 0;
    bool registered = false;
    int handshake_left = 0;
    std::deque<OpPtr> waiting;  // submitted while connecting
    absl::Time connect_deadline = absl::InfiniteFuture();
    absl::Time reconnect_at = absl::InfinitePast();  // while kDown
    absl::Duration backoff = kMinBackoff;
  };
  // A set-up command's reply: privdata of its callback.
  struct SetupStep {
    Conn* conn;
    int script;  // SCRIPT LOAD of this script, or -1 (AUTH, SELECT)
    bool select;
  };
  struct OpRef {
    OpPtr op;
  };

  void Wake() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  }

  void Submit(OpPtr op) {
    {
      absl::MutexLock lock(&mu_);
      if (!stopping_) {
        submitted_.push_back(std::move(op));
        op = nullptr;
      }
    }
    if (op != nullptr) {
      std::move(op->done)(absl::UnavailableError("the redis client is shutting down"));
      return;
    }
    Wake();
  }

  // ---- the loop thread ----

  void Loop() {
    epoll_event events[64];
    while (true) {
      const absl::Time now = absl::Now();
      absl::Time next = absl::InfiniteFuture();
      for (Conn& c : conns_) {
        if (c.state == State::kDown) next = std::min(next, c.reconnect_at);
        if (c.state == State::kConnecting) next = std::min(next, c.connect_deadline);
      }
      if (!deadlines_.empty()) next = std::min(next, deadlines_.front()->deadline);
      int timeout_ms = -1;
      if (next != absl::InfiniteFuture()) {
        timeout_ms = static_cast<int>(std::clamp<int64_t>(
            absl::ToInt64Milliseconds(absl::Ceil(next - now, absl::Milliseconds(1))), 0, 60'000));
      }
      const int n = ::epoll_wait(epoll_fd_, events, 64, timeout_ms);
      for (int i = 0; i < n; ++i) {
        if (events[i].data.ptr == nullptr) {
          uint64_t v;
          while (::read(wake_fd_, &v, sizeof(v)) > 0) {
          }
          continue;
        }
        Conn* c = static_cast<Conn*>(events[i].data.ptr);
        const uint32_t ev = events[i].events;
        if (c->ac != nullptr && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))) redisAsyncHandleRead(c->ac);
        if (c->ac != nullptr && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && (c->mask & EPOLLOUT)) {
          redisAsyncHandleWrite(c->ac);
        }
      }
      bool stopping;
      std::deque<OpPtr> submitted;
      {
        absl::MutexLock lock(&mu_);
        stopping = stopping_;
        submitted.swap(submitted_);
      }
      if (stopping) {
        Shutdown(std::move(submitted));
        return;
      }
      RunTimers(absl::Now());
      std::deque<OpPtr> retries;
      retries.swap(retries_);
      for (OpPtr& op : retries) Dispatch(std::move(op));
      for (OpPtr& op : submitted) {
        op->deadline = absl::Now() + options_.timeout;
        deadlines_.push_back(op);
        Dispatch(std::move(op));
      }
    }
  }

  void RunTimers(absl::Time now) {
    for (Conn& c : conns_) {
      if (c.state == State::kDown && c.reconnect_at <= now) StartConnect(&c);
      if (c.state == State::kConnecting && c.connect_deadline <= now) {
        Disconnect(&c, absl::UnavailableError(
                           absl::StrCat("redis ", Address(), ": connection attempt timed out")));
      }
    }
    while (!deadlines_.empty() &&
           (deadlines_.front()->finished || deadlines_.front()->deadline <= now)) {
      OpPtr op = std::move(deadlines_.front());
      deadlines_.pop_front();
      if (op->finished) continue;
      redisAsyncContext* sent_on = op->sent_on;
      Finish(op, absl::DeadlineExceededError(absl::StrCat("redis ", Address(), ": no reply within ",
                                                          absl::FormatDuration(options_.timeout))));
      for (Conn& c : conns_) {
        if (sent_on != nullptr && c.ac == sent_on) {
          Disconnect(&c,
                     absl::UnavailableError("redis connection dropped after a command timed out"));
        }
      }
    }
  }

  std::string Address() const {
    return absl::StrCat(options_.endpoint.host, ":", options_.endpoint.port);
  }

  void Finish(const OpPtr& op, absl::StatusOr<const redisReply*> result) {
    if (op->finished) return;
    op->finished = true;
    ReplyCallback done = std::move(op->done);
    std::move(done)(std::move(result));
  }

  // Sends `op` on a ready connection, queues it on a connecting one, or fails
  // it at once when Redis is down.
  void Dispatch(OpPtr op) {
    if (op->finished) return;
    const size_t n = conns_.size();
    for (size_t i = 0; i < n; ++i) {
      Conn& c = conns_[(next_conn_ + i) % n];
      if (c.state == State::kReady) {
        next_conn_ = (next_conn_ + i + 1) % n;
        Send(&c, op, /*as_eval=*/false);
        return;
      }
    }
    for (Conn& c : conns_) {
      if (c.state == State::kConnecting) {
        c.waiting.push_back(std::move(op));
        return;
      }
    }
    Finish(op, absl::UnavailableError(
                   absl::StrCat("redis ", Address(), " is unreachable: ", last_error_.message())));
  }

  void Send(Conn* c, const OpPtr& op, bool as_eval) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    argv.reserve(op->args.size() + 2);
    lens.reserve(op->args.size() + 2);
    const auto add = [&](std::string_view s) {
      argv.push_back(s.data());
      lens.push_back(s.size());
    };
    if (op->script >= 0) {
      add(as_eval ? "EVAL" : "EVALSHA");
      add(as_eval ? options_.scripts[op->script] : shas_[op->script]);
    }
    for (const std::string& a : op->args) add(a);
    op->sent_on = c->ac;
    sent_.fetch_add(1, std::memory_order_relaxed);
    auto* ref = new OpRef{op};
    if (redisAsyncCommandArgv(c->ac, &OnReply, ref, static_cast<int>(argv.size()), argv.data(),
                              lens.data()) != REDIS_OK) {
      // Only when the context is already disconnecting: no callback will come.
      delete ref;
      Finish(op, absl::UnavailableError("redis connection is closing"));
    }
  }

  static void OnReply(redisAsyncContext* ac, void* r, void* privdata) {
    std::unique_ptr<OpRef> ref(static_cast<OpRef*>(privdata));
    Conn* c = static_cast<Conn*>(ac->data);
    c->client->HandleReply(c, ac, ref->op, static_cast<redisReply*>(r));
  }

  void HandleReply(Conn* c, redisAsyncContext* ac, const OpPtr& op, redisReply* reply) {
    if (reply == nullptr) {
      // The context is being freed: the connection was lost or dropped.
      if (c->ac == ac) Lost(c, absl::UnavailableError("connection to redis lost"));
      LoseOp(op);
      return;
    }
    if (op->finished) return;  // answered already (timed out)
    if (op->script >= 0 && options_.lose_reply && reply->type != REDIS_REPLY_ERROR &&
        options_.lose_reply(op->script)) {
      // As if the link broke right after Redis ran the command: the reply
      // never arrives, the connection is lost (hiredis frees the context
      // once this callback returns, failing the rest of its pipeline).
      LoseOp(op);
      Disconnect(c, absl::UnavailableError("connection to redis lost (test: reply dropped)"));
      return;
    }
    if (reply->type == REDIS_REPLY_ERROR && op->script >= 0 && !op->noscript_resent &&
        absl::StartsWith(ReplyText(reply), "NOSCRIPT")) {
      op->noscript_resent = true;
      Send(c, op, /*as_eval=*/true);
      return;
    }
    Finish(op, static_cast<const redisReply*>(reply));
  }

  // `op`'s connection was lost before its reply: resent once when it may be,
  // else failed.
  void LoseOp(const OpPtr& op) {
    if (op->finished) return;
    if (op->retry_on_loss && op->losses++ == 0 && !stopping_seen_) {
      retries_.push_back(op);
    } else {
      Finish(op, absl::UnavailableError(
                     absl::StrCat("connection to redis ", Address(), " lost before the reply")));
    }
  }

  // ---- connections ----

  void StartConnect(Conn* c) {
    redisAsyncContext* ac =
        redisAsyncConnect(options_.endpoint.host.c_str(), options_.endpoint.port);
    if (ac == nullptr || ac->err) {
      const std::string err = ac != nullptr ? ac->errstr : "out of memory";
      if (ac != nullptr) redisAsyncFree(ac);
      c->reconnect_at = absl::Now() + c->backoff;
      c->backoff = std::min(kMaxBackoff, c->backoff * 2);
      ConnectFailed(absl::UnavailableError(absl::StrCat("redis ", Address(), ": ", err)));
      return;
    }
    ac->data = c;
    c->ac = ac;
    c->fd = ac->c.fd;
    c->mask = 0;
    c->registered = false;
    ac->ev.data = c;
    ac->ev.addRead = [](void* p) {
      static_cast<Conn*>(p)->client->SetMask(static_cast<Conn*>(p), EPOLLIN, true);
    };
    ac->ev.delRead = [](void* p) {
      static_cast<Conn*>(p)->client->SetMask(static_cast<Conn*>(p), EPOLLIN, false);
    };
    ac->ev.addWrite = [](void* p) {
      static_cast<Conn*>(p)->client->SetMask(static_cast<Conn*>(p), EPOLLOUT, true);
    };
    ac->ev.delWrite = [](void* p) {
      static_cast<Conn*>(p)->client->SetMask(static_cast<Conn*>(p), EPOLLOUT, false);
    };
    ac->ev.cleanup = [](void* p) {
      static_cast<Conn*>(p)->client->SetMask(static_cast<Conn*>(p), 0, false, true);
    };
    redisAsyncSetConnectCallback(ac, &OnConnect);
    redisAsyncSetDisconnectCallback(ac, &OnDisconnect);
    c->state = State::kConnecting;
    c->connect_deadline = absl::Now() + options_.timeout;
    c->handshake_left = 0;
    // The set-up, pipelined behind the connect.
    const RedisEndpoint& e = options_.endpoint;
    if (!e.password.empty()) {
      if (e.user.empty()) {
        SetupCommand(c, -1, false, {"AUTH", e.password});
      } else {
        SetupCommand(c, -1, false, {"AUTH", e.user, e.password});
      }
    }
    if (e.db != 0) SetupCommand(c, -1, true, {"SELECT", absl::StrCat(e.db)});
    for (size_t i = 0; i < options_.scripts.size(); ++i) {
      SetupCommand(c, static_cast<int>(i), false, {"SCRIPT", "LOAD", options_.scripts[i]});
    }
    if (c->handshake_left == 0) SetupCommand(c, -1, false, {"PING"});
  }

  void SetupCommand(Conn* c, int script, bool select, std::vector<std::string> argv) {
    std::vector<const char*> p;
    std::vector<size_t> l;
    for (const std::string& a : argv) {
      p.push_back(a.data());
      l.push_back(a.size());
    }
    ++c->handshake_left;
    sent_.fetch_add(1, std::memory_order_relaxed);
    auto* step = new SetupStep{c, script, select};
    if (redisAsyncCommandArgv(c->ac, &OnSetupReply, step, static_cast<int>(p.size()), p.data(),
                              l.data()) != REDIS_OK) {
      delete step;
    }
  }

  static void OnSetupReply(redisAsyncContext* ac, void* r, void* privdata) {
    std::unique_ptr<SetupStep> step(static_cast<SetupStep*>(privdata));
    Conn* c = step->conn;
    RedisClientImpl* self = c->client;
    if (r == nullptr || c->ac != ac) return;  // lost: handled by Lost()
    const redisReply* reply = static_cast<redisReply*>(r);
    if (reply->type == REDIS_REPLY_ERROR) {
      const std::string err(ReplyText(reply));
      absl::Status s;
      if (absl::StrContains(err, "NOAUTH") || absl::StrContains(err, "WRONGPASS") ||
          absl::StrContains(err, "invalid password") ||
          absl::StrContains(err, "invalid username")) {
        s = absl::UnauthenticatedError(absl::StrCat("redis ", self->Address(), ": ", err));
      } else if (step->select) {
        s = absl::InvalidArgumentError(absl::StrCat("redis SELECT: ", err));
      } else {
        s = absl::InternalError(absl::StrCat("redis ", self->Address(), " set-up: ", err));
      }
      self->Disconnect(c, s);
      return;
    }
    if (step->script >= 0) self->shas_[step->script] = std::string(ReplyText(reply));
    if (--c->handshake_left == 0) self->Ready(c);
  }

  static void OnConnect(const redisAsyncContext* ac, int status) {
    Conn* c = static_cast<Conn*>(ac->data);
    if (status != REDIS_OK && c->ac == ac) {
      // hiredis frees the context after this returns.
      c->client->Lost(c, absl::UnavailableError(
                             absl::StrCat("redis ", c->client->Address(), ": ", ac->errstr)));
    }
  }

  static void OnDisconnect(const redisAsyncContext* ac, int status) {
    Conn* c = static_cast<Conn*>(ac->data);
    if (c->ac == ac) c->client->Lost(c, absl::UnavailableError("connection to redis closed"));
  }

  void Ready(Conn* c) {
    c->state = State::kReady;
    c->backoff = kMinBackoff;
    c->connect_deadline = absl::InfiniteFuture();
    {
      absl::MutexLock lock(&mu_);
      ready_once_ = true;
    }
    std::deque<OpPtr> waiting;
    waiting.swap(c->waiting);
    for (OpPtr& op : waiting) {
      if (!op->finished) Send(c, op, false);
    }
  }

  // The connection `c` is gone (hiredis is freeing its context, or we are
  // about to): forget the context, fail what waited for it, plan the next
  // attempt. Safe to call more than once.
  void Lost(Conn* c, absl::Status why) {
    if (c->ac == nullptr) return;
    const bool was_ready = c->state == State::kReady;
    c->ac = nullptr;
    c->state = State::kDown;
    last_error_ = why;
    if (was_ready) {
      c->reconnect_at = absl::Now();  // a broken link: try again at once
    } else {
      c->reconnect_at = absl::Now() + c->backoff;
      c->backoff = std::min(kMaxBackoff, c->backoff * 2);
      ConnectFailed(why);
    }
    std::deque<OpPtr> waiting;
    waiting.swap(c->waiting);
    for (OpPtr& op : waiting) Finish(op, why);
  }

  // Closes `c` ourselves (set-up refused, connect or command timeout).
  void Disconnect(Conn* c, absl::Status why) {
    redisAsyncContext* ac = c->ac;
    if (ac == nullptr) return;
    Lost(c, std::move(why));
    redisAsyncFree(ac);  // runs the pending callbacks with no reply
  }

  void ConnectFailed(const absl::Status& why) {
    absl::MutexLock lock(&mu_);
    if (first_error_.ok() || absl::IsUnavailable(first_error_)) first_error_ = why;
    ++failed_attempts_;
  }

  void SetMask(Conn* c, uint32_t bit, bool on, bool cleanup = false) {
    const uint32_t mask = cleanup ? 0 : (on ? (c->mask | bit) : (c->mask & ~bit));
    c->mask = mask;
    epoll_event ev{};
    ev.events = mask;
    ev.data.ptr = c;
    if (mask == 0) {
      if (c->registered) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd, &ev);
      c->registered = false;
    } else if (!c->registered) {
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c->fd, &ev);
      c->registered = true;
    } else {
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c->fd, &ev);
    }
  }

  void Shutdown(std::deque<OpPtr> submitted) {
    stopping_seen_ = true;
    const absl::Status why = absl::UnavailableError("the redis client is shutting down");
    for (Conn& c : conns_) Disconnect(&c, why);
    for (OpPtr& op : retries_) Finish(op, why);
    for (OpPtr& op : submitted) Finish(op, why);
    for (OpPtr& op : deadlines_) Finish(op, why);
    retries_.clear();
    deadlines_.clear();
  }

  const RedisClientOptions options_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread loop_;
  std::atomic<uint64_t> sent_{0};

  absl::Mutex mu_;
  std::deque<OpPtr> submitted_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool ready_once_ ABSL_GUARDED_BY(mu_) = false;
  int failed_attempts_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status first_error_ ABSL_GUARDED_BY(mu_);

  // Loop thread only.
  std::vector<Conn> conns_;
  std::vector<std::string> shas_;
  std::deque<OpPtr> deadlines_;  // every op in flight, by deadline (submission order)
  std::deque<OpPtr> retries_;    // lost before their reply; resent after the timers ran
  size_t next_conn_ = 0;
  bool stopping_seen_ = false;
  absl::Status last_error_ = absl::UnavailableError("not connected yet");
};

}  // namespace

absl::StatusOr<std::unique_ptr<RedisClient>> RedisClient::Connect(RedisClientOptions options) {
  auto client = std::make_unique<RedisClientImpl>(std::move(options));
  if (absl::Status s = client->Start(); !s.ok()) return s;
  return std::unique_ptr<RedisClient>(std::move(client));
}

}  // namespace hc::router
