// Redis ledger: several router replicas share one ledger in one Redis server
// (standalone or behind Sentinel; not Redis Cluster, whose slots the global
// conversation counter would straddle).
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
// Thread-safety: thread-safe; calls spread round-robin over a small pool of
// connections (LedgerOptions::redis_connections), each used by one call at a
// time.
#ifndef HC_ROUTER_LEDGER_REDIS_LEDGER_H_
#define HC_ROUTER_LEDGER_REDIS_LEDGER_H_

#include <memory>

#include "router/ledger/ledger.h"

namespace hc::router {

class RedisLedger : public ConversationLedger {
 public:
  // Commands sent to Redis so far (each is one round trip).
  virtual uint64_t round_trips() const = 0;
};

// `options.backend` is "redis://host:port[/db]". UNAVAILABLE when Redis
// cannot be reached; INVALID_ARGUMENT for a malformed URL.
absl::StatusOr<std::unique_ptr<RedisLedger>> OpenRedisLedger(const LedgerOptions& options);

}  // namespace hc::router

#endif  // HC_ROUTER_LEDGER_REDIS_LEDGER_H_
