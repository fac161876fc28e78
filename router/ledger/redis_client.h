// A small asynchronous Redis client for the ledger: hiredis's async API on an
// event loop thread of its own.
//
// Why our own epoll loop and not libevent (hiredis/adapters/libevent.h): the
// loop needs four things (fd readiness, a cross-thread wake-up, per-command
// deadlines, reconnect timers), all of which fit in ~100 lines over
// epoll + eventfd, and it keeps the router free of another runtime
// dependency whose threading rules (event_base is not thread-safe without
// evthread_use_pthreads) would need the same care.
//
// Commands from any thread are queued (a mutex-protected queue plus an eventfd
// write); the loop thread sends them, pipelined, on one of
// `connections` connections (round-robin over the ready ones) and runs each
// command's callback exactly once on the loop thread:
//   - with the reply (valid only during the call), or
//   - UNAVAILABLE when no connection is ready or connecting (fail fast while
//     Redis is down: connection attempts back off from 50 ms to 2 s), or when
//     the connection was lost before the reply (a command marked
//     retry_on_loss is sent once more first, waiting for the reconnection
//     within its deadline), or
//   - DEADLINE_EXCEEDED after `timeout` (the connection it was sent on is then
//     dropped and re-established: a reply that late means the link or server
//     is stuck, and later replies on it would be misattributed otherwise).
// A command issued while its connection is (re)connecting waits for it, within
// its deadline. EVALSHA that answers NOSCRIPT (Redis restarted or SCRIPT
// FLUSH) is resent once as EVAL with the script's source, which also reloads
// it into the script cache.
//
// Connection set-up is pipelined: AUTH (when the URL has a password), SELECT
// (db != 0), SCRIPT LOAD of every script.
//
// Thread-safety: Submit-side methods are thread-safe; callbacks run on the
// loop thread and must not block. The destructor fails every pending command
// (UNAVAILABLE) and joins the loop.
#ifndef HC_ROUTER_LEDGER_REDIS_CLIENT_H_
#define HC_ROUTER_LEDGER_REDIS_CLIENT_H_

#include <hiredis.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace hc::router {

struct RedisEndpoint {
  std::string host;
  int port = 6379;
  int db = 0;
  std::string user;      // empty: AUTH <password> (the default user)
  std::string password;  // empty: no AUTH
};

// "redis://[[user]:password@]host[:port][/db]". INVALID_ARGUMENT when
// malformed; UNIMPLEMENTED for rediss:// (hiredis 0.14 has no TLS).
absl::StatusOr<RedisEndpoint> ParseRedisUrl(std::string_view url);

struct RedisClientOptions {
  RedisEndpoint endpoint;
  int connections = 1;
  absl::Duration timeout = absl::Seconds(2);  // per command, and per connection attempt
  std::vector<std::string> scripts;           // Lua sources, loaded on every connection
  // Tests only: called with the script index of each EVALSHA reply; true
  // makes the client treat that reply as lost (Redis ran the command, then
  // the connection broke before the reply arrived): the connection is
  // dropped, and the command is resent once when it is retry_on_loss.
  std::function<bool(int script)> lose_reply;
};

class RedisClient {
 public:
  // The reply is owned by hiredis and valid only during the call.
  using ReplyCallback = absl::AnyInvocable<void(absl::StatusOr<const redisReply*>) &&>;

  // Starts the loop and waits until a connection is ready. UNAVAILABLE when
  // none could be made; UNAUTHENTICATED when AUTH is refused;
  // INVALID_ARGUMENT when SELECT is.
  static absl::StatusOr<std::unique_ptr<RedisClient>> Connect(RedisClientOptions options);

  virtual ~RedisClient() = default;

  // EVALSHA of options.scripts[script] with `keys` and `args`.
  virtual void Eval(int script, std::vector<std::string> keys, std::vector<std::string> args,
                    bool retry_on_loss, ReplyCallback done) = 0;
  // Any other command.
  virtual void Command(std::vector<std::string> argv, bool retry_on_loss, ReplyCallback done) = 0;

  // Commands written to Redis so far (set-up, retries and resends included):
  // each is one request/response.
  virtual uint64_t commands_sent() const = 0;
};

}  // namespace hc::router

#endif  // HC_ROUTER_LEDGER_REDIS_CLIENT_H_
