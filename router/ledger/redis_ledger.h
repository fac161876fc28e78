// Redis ledger: several router replicas share one ledger in one Redis server
// (standalone or behind Sentinel). Redis Cluster is not supported: the
// scripts also update the salt's set and the committed set, keys outside the
// conversation's hash tag, which Cluster refuses (CROSSSLOT); exact counts
// and the per-salt cap were preferred over Cluster support.
//
// URL: redis://[[user]:password@]host[:port][/db]; with a password the
// connection AUTHs first (AUTH user password with a user). rediss:// (TLS)
// answers UNIMPLEMENTED: hiredis 0.14 has no TLS.
//
// Layout, with P = <prefix>, S = the salt's namespace: the hex salt, or with
// a tenant t<hex tenant>/<hex salt> (never a bare hex string, so the empty
// tenant keeps the layout of before tenants), K = P:{S:<id>}:
//   K:m   hash: r (round), w (worker state blob), la (last activity, unix ms),
//         lh/le (lease holder and expiry, unix ms), lc/lx (holder and token
//         hash of the last commit: makes a resent commit idempotent),
//         u (each round's usage, record_codec's Usage per round, appended per
//         commit; absent while a conversation has never recorded one, as in
//         those written by earlier versions)
//   K:t   string: committed token ids, little-endian u32, appended per turn
//   K:g   string: committed messages, appended per turn
//   P:{S}:z  sorted set: the salt's conversations (member: id), committed or
//         with a first turn in flight, scored by when they expire; the
//         per-salt cap counts its live members
//   P:c   sorted set: committed conversations (member: S:<id>) by expiry;
//         CountConversations counts its live members
//   P:{t<hex tenant>}:n  sorted set: a tenant's conversations (member:
//         S:<id>), kept like z; the tenant cap counts its live members
//
// Expiry. A lease-only hash (a first turn in flight) carries a PEXPIRE of the
// lease TTL (renewed with the lease), so a router killed mid-turn leaves
// nothing that outlives its lease. Every commit sets PEXPIRE conversation_ttl
// on the three keys (PERSIST with no TTL), and a lease extends them to at
// least the lease's end, so Redis forgets idle conversations itself (the
// deployment's noeviction policy never has to refuse writes for them). The
// sets' scores mirror those expiries, so counts are exact at any instant
// although the members of expired conversations linger until trimmed: a
// salt's by its next new conversation (64 at a time), the committed set by
// CountConversations (1024 at a time) or when the conversation starts over;
// each trimmed member counts as one expired conversation in LedgerCounters,
// so the sum over routers is exact and lags by at most one stats poll. An idle salt's set expires
// with its last conversation. Conversations written by an earlier version (with the old global
// counter) join the sets at their next turn.
//
// Time is Redis's (TIME inside the scripts; Redis 7 replicates script
// effects), so replicas with skewed clocks agree on leases; LedgerOptions::
// clock is not used. Tests step lease time with RedisLedgerHooks.
//
// Every operation is one Lua script (EVALSHA), so each is atomic and costs one
// round trip: taking the lease compares and sets holder/expiry, and the commit
// of round N+1 checks the holder and that the round is still N. A turn costs
// two round trips (acquire, commit) or two on failure (acquire, release).
//
// I/O: every operation is asynchronous (redis_client.h): commands are queued
// to one event loop thread and pipelined over LedgerOptions::redis_connections
// connections; callbacks run on that thread. A command times out after
// redis_timeout (DEADLINE_EXCEEDED); while Redis is unreachable commands fail
// fast with UNAVAILABLE, and the connections reconnect with backoff. Reads,
// lease operations and Commit are resent once when the connection is lost
// before their reply (Commit is idempotent: a resend of a commit that was
// applied answers OK and applies nothing; it can still fail if another turn
// committed in between). Delete is not resent (its outcome is then unknown:
// UNAVAILABLE).
//
// Thread-safety: thread-safe.
#ifndef HC_ROUTER_LEDGER_REDIS_LEDGER_H_
#define HC_ROUTER_LEDGER_REDIS_LEDGER_H_

#include <functional>
#include <memory>

#include "router/ledger/ledger.h"

namespace hc::router {

// Test hooks.
struct RedisLedgerHooks {
  // Added to Redis's clock for lease expiry and last activity, so a test can
  // step time (key expiry stays real time).
  std::function<absl::Duration()> clock_offset;
  // Called for each Commit reply; true: the reply is lost (the connection is
  // dropped after Redis ran the commit).
  std::function<bool()> lose_commit_reply;
};

class RedisLedger : public ConversationLedger {
 public:
  // Commands sent to Redis so far (each is one request/response; pipelined,
  // so not one network round trip each).
  virtual uint64_t round_trips() const = 0;
};

// `options.backend` is "redis://host:port[/db]". UNAVAILABLE when Redis
// cannot be reached; INVALID_ARGUMENT for a malformed URL.
absl::StatusOr<std::unique_ptr<RedisLedger>> OpenRedisLedger(const LedgerOptions& options,
                                                             RedisLedgerHooks hooks = {});

}  // namespace hc::router

#endif  // HC_ROUTER_LEDGER_REDIS_LEDGER_H_
