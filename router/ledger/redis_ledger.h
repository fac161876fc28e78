// Redis ledger: several router replicas share one ledger in one Redis server
// (standalone or behind Sentinel). Redis Cluster is not supported: the commit
// and delete scripts also update <prefix>:count, a key outside the
// conversation's hash tag, which Cluster refuses (CROSSSLOT); keeping an O(1)
// global count was preferred over Cluster support.
//
// URL: redis://[[user]:password@]host[:port][/db]; with a password the
// connection AUTHs first (AUTH user password with a user). rediss:// (TLS)
// answers UNIMPLEMENTED: hiredis 0.14 has no TLS.
//
// Layout per conversation, with K = <prefix>:{<hex salt>:<id>}:
//   K:m  hash: r (round), w (worker state blob), la (last activity, unix ms),
//        lh/le (lease holder and expiry, unix ms of the routers' clocks)
//   K:t  string: committed token ids, little-endian u32, appended per turn
//   K:g  string: committed messages, appended per turn
// and <prefix>:count, the number of committed conversations.
//
// Every operation is one Lua script (EVALSHA), so each is atomic and costs one
// round trip: taking the lease compares and sets holder/expiry, and the commit
// of round N+1 checks the holder and that the round is still N. A turn costs
// two round trips (acquire, commit) or two on failure (acquire, release).
// Lease expiry uses the routers' clocks (the injected Clock), so replicas
// need loosely synchronised clocks (NTP); TTLs are seconds to minutes.
//
// I/O: every operation is asynchronous (redis_client.h): commands are queued
// to one event loop thread and pipelined over LedgerOptions::redis_connections
// connections; callbacks run on that thread. A command times out after
// redis_timeout (DEADLINE_EXCEEDED); while Redis is unreachable commands fail
// fast with UNAVAILABLE, and the connections reconnect with backoff. Reads and
// lease operations are resent once when the connection is lost before their
// reply; Commit and Delete are not (their outcome is then unknown:
// UNAVAILABLE).
//
// Thread-safety: thread-safe.
#ifndef HC_ROUTER_LEDGER_REDIS_LEDGER_H_
#define HC_ROUTER_LEDGER_REDIS_LEDGER_H_

#include <memory>

#include "router/ledger/ledger.h"

namespace hc::router {

class RedisLedger : public ConversationLedger {
 public:
  // Commands sent to Redis so far (each is one request/response; pipelined,
  // so not one network round trip each).
  virtual uint64_t round_trips() const = 0;
};

// `options.backend` is "redis://host:port[/db]". UNAVAILABLE when Redis
// cannot be reached; INVALID_ARGUMENT for a malformed URL.
absl::StatusOr<std::unique_ptr<RedisLedger>> OpenRedisLedger(const LedgerOptions& options);

}  // namespace hc::router

#endif  // HC_ROUTER_LEDGER_REDIS_LEDGER_H_
