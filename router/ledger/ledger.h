// The conversation ledger: the router's source of truth for every
// conversation, keyed by (tenant, cache_salt, conversation_id). Worker caches are
// disposable; the ledger's tokens are what any worker recomputes from.
//
// An entry holds the committed round, every committed token id (prompts and
// generated tokens exactly as the model saw them) with message boundaries,
// each round's usage (RoundUsage), the worker holding the cached state with the committed length
// and hash it reported, the lease of the turn in flight, and the last activity.
//
// Leases: a turn takes the conversation's lease (AcquireLease), and gives it
// back with Commit (success) or ReleaseLease (failure/cancel). A lease held by
// another holder and not yet expired refuses the turn with ABORTED; an expired
// lease (e.g. of a crashed router) is taken over.
//
// Expiry (LedgerOptions::conversation_ttl): a conversation with no commit for
// the TTL and no turn in flight (no lease, or only an expired one) is
// forgotten in every backend, exactly as if deleted: Get answers NOT_FOUND and
// the next turn starts at round 0. A turn's lease keeps its conversation alive
// until the lease ends. Memory and file expire lazily (on the next turn) and
// by a bounded background sweep; Redis expires the keys itself (PEXPIRE).
//
// Cap (LedgerOptions::max_conversations_per_salt): AcquireLease of a
// conversation that does not exist yet (no committed round, no live lease), in
// a salt that already has the cap's number of conversations (committed ones
// plus first turns in flight), answers RESOURCE_EXHAUSTED and changes
// nothing; existing conversations are never refused. A delete frees a slot at
// once; an expiry does in Redis, and in memory/file once the sweep (or the
// conversation's next turn) erased the entry, i.e. within one sweep pass.
//
// Tenant cap (LedgerOptions::tenant_conversation_limit): the same rule per
// tenant (router/tenancy): a new conversation of a tenant that already has its
// limit's number of conversations (over all its salts) is refused with
// RESOURCE_EXHAUSTED and a retry delay (common/retry_delay.h).
//
// Tenants never meet: two keys that differ only in tenant name two unrelated
// conversations. The empty tenant (no API keys configured) is encoded in
// every backend exactly as keys were before tenants existed, so older ledgers
// stay readable.
//
// Thread-safety: every implementation is safe for concurrent use, and the
// Redis one also across router processes sharing one Redis.
#ifndef HC_ROUTER_LEDGER_LEDGER_H_
#define HC_ROUTER_LEDGER_LEDGER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/token_hash.h"

namespace hc::router {

struct LedgerKey {
  std::string cache_salt;
  std::string conversation_id;
  // The API key's tenant (router/tenancy/api_keys.h); "" without API keys.
  std::string tenant;
};

enum class Role : uint8_t { kSystem = 0, kUser = 1, kAssistant = 2, kTool = 3 };
inline constexpr int kNumRoles = 4;
std::string_view RoleName(Role role);
// Parses "system" | "user" | "assistant" | "tool".
bool ParseRole(std::string_view name, Role* role);

// One committed message: its role, its text (for an assistant reply: the
// decoded generated tokens) and its token range [begin, end) in the ledger.
struct LedgerMessage {
  Role role = Role::kUser;
  uint32_t begin = 0;
  uint32_t end = 0;
  std::string text;
  bool operator==(const LedgerMessage&) const = default;
};

// The committed state a worker reported holding: `num_tokens` computed tokens
// (may be fewer than the ledger's tokens: the last sampled token is typically
// not computed yet) whose chained hash (common/token_hash.h) is `prefix_hash`.
// An empty worker_id means no worker holds the state.
struct WorkerState {
  std::string worker_id;
  uint64_t round = 0;
  uint32_t num_tokens = 0;
  uint64_t prefix_hash = kEmptyTokenHash;
  bool operator==(const WorkerState&) const = default;
};

struct Lease {
  std::string holder;  // empty: not held
  absl::Time expiry = absl::InfinitePast();
};

// What one committed round cost, as its turn reported it to the client
// (chat.proto Usage): the prompt's tokens, how many of them came from a
// cache, and the reply's tokens. The ledger keeps it with the round so that
// any router can answer for it later (GET /v1/responses/{id}).
struct RoundUsage {
  uint32_t prompt_tokens = 0;
  uint32_t cached_tokens = 0;
  uint32_t completion_tokens = 0;
  bool operator==(const RoundUsage&) const = default;
};

struct ConversationRecord {
  uint64_t round = 0;  // committed rounds; 0: nothing committed yet
  std::vector<uint32_t> tokens;
  std::vector<LedgerMessage> messages;
  WorkerState worker;
  Lease lease;
  absl::Time last_activity = absl::InfinitePast();
  // usage[r - 1] is round r's. Unknown (nullopt, or past the vector's end)
  // for rounds committed without one: by a version before the ledger kept
  // usage, or by a CommitRequest with none. See UsageOfRound.
  std::vector<std::optional<RoundUsage>> usage;
};

// Round `round`'s usage (1-based); nullopt when it is unknown or there is no
// such round.
std::optional<RoundUsage> UsageOfRound(const ConversationRecord& record, uint64_t round);

// What a successful turn adds. Message ranges are absolute ledger positions.
//
// A rewrite turn (the chat template renders the committed history differently
// once new messages are added) sets `rewrite_from`: the commit then REPLACES
// the entry's tokens from that position on and drops the messages that end
// after it, before appending, in one atomic step. It must not exceed the
// committed token count (INVALID_ARGUMENT, changing nothing) and should be a
// message boundary: a message that began before it but ends after it is
// dropped whole. Unset: the commit appends.
struct CommitRequest {
  uint64_t expected_round = 0;  // the round becomes expected_round + 1
  std::optional<uint32_t> rewrite_from;
  std::vector<uint32_t> appended_tokens;
  std::vector<LedgerMessage> appended_messages;
  WorkerState worker;
  // The round's usage, committed with it in the same atomic step (nullopt:
  // unknown; every turn of the router sets it).
  std::optional<RoundUsage> usage;
};

// Monotonic counts since the ledger was opened, for the router's metrics.
struct LedgerCounters {
  // Conversations forgotten for being idle past conversation_ttl (Redis:
  // counted by the router whose CountConversations first sees the expiry).
  uint64_t conversations_expired = 0;
  // AcquireLease calls refused by max_conversations_per_salt (not by a
  // tenant's limit: the service counts those per tenant).
  uint64_t conversations_refused = 0;
};

// The ledger's operations are asynchronous: each call returns at once and runs
// its `done` exactly once, either inline before returning (a backend without
// I/O on that path, or an argument error) or later on a thread of the ledger's
// own (a file writer thread, a Redis event loop). So a gRPC reactor never
// blocks on ledger I/O. Contract for callers: do not hold a lock that `done`
// takes, and keep `done` short and non-blocking (it may run on the thread that
// serves every other turn's ledger I/O). Arguments are copied or moved before
// the call returns; the ledger must outlive every pending `done`.
//
// Each operation also has a blocking form with the same name and no callback,
// for tools, tests and benchmarks: never call one on a gRPC callback thread or
// inside a `done`.
class ConversationLedger {
 public:
  using RecordCallback = absl::AnyInvocable<void(absl::StatusOr<ConversationRecord>) &&>;
  using StatusCallback = absl::AnyInvocable<void(absl::Status) &&>;
  using CountCallback = absl::AnyInvocable<void(absl::StatusOr<uint64_t>) &&>;

  virtual ~ConversationLedger() = default;

  // Takes the lease for `holder` until now + ttl and returns the entry (round 0
  // and no tokens for a new conversation). ABORTED when another holder's lease
  // has not expired. A holder that already holds the lease renews it.
  virtual void AcquireLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                            RecordCallback done) = 0;

  // Extends `holder`'s lease to now + ttl (the heartbeat of a long turn).
  // ABORTED when `holder` no longer holds it (it expired and was taken over,
  // or the conversation was deleted).
  virtual void RenewLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                          StatusCallback done) = 0;

  // Commits round expected_round + 1 and releases the lease. ABORTED when
  // `holder` no longer holds the lease (it expired and was taken over);
  // FAILED_PRECONDITION when the round is not expected_round; INVALID_ARGUMENT
  // when rewrite_from is past the committed tokens. On error nothing
  // changes. OK means durable as the backend promises (file: per its fsync
  // policy; Redis: acknowledged by the server).
  virtual void Commit(const LedgerKey& key, std::string_view holder, CommitRequest commit,
                      StatusCallback done) = 0;

  // Gives the lease back without committing (no-op when `holder` does not hold
  // it). A conversation with no committed round disappears.
  virtual void ReleaseLease(const LedgerKey& key, std::string_view holder, StatusCallback done) = 0;

  // The committed entry; NOT_FOUND when nothing was ever committed.
  virtual void Get(const LedgerKey& key, RecordCallback done) = 0;

  // Forgets the conversation. NOT_FOUND when absent; ABORTED while a turn holds
  // an unexpired lease.
  virtual void Delete(const LedgerKey& key, StatusCallback done) = 0;

  // Conversations with at least one committed round (not expired).
  virtual void CountConversations(CountCallback done) = 0;

  // Thread-safe, non-blocking. A ledger that neither expires nor caps (e.g.
  // a test's wrapper) reports zeros.
  virtual LedgerCounters counters() const { return {}; }

  // Blocking forms (see above).
  absl::StatusOr<ConversationRecord> AcquireLease(const LedgerKey& key, std::string_view holder,
                                                  absl::Duration ttl);
  absl::Status RenewLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl);
  absl::Status Commit(const LedgerKey& key, std::string_view holder, const CommitRequest& commit);
  absl::Status ReleaseLease(const LedgerKey& key, std::string_view holder);
  absl::StatusOr<ConversationRecord> Get(const LedgerKey& key);
  absl::Status Delete(const LedgerKey& key);
  absl::StatusOr<uint64_t> CountConversations();
};

// A clock (tests inject a fake one).
using Clock = std::function<absl::Time()>;

enum class FsyncPolicy { kAlways, kInterval, kNever };
bool ParseFsyncPolicy(std::string_view name, FsyncPolicy* policy);

struct LedgerOptions {
  // "memory" (default), "file" (needs `dir`) or "redis://host:port[/db]".
  // "memory" with a `dir` is the file backend: the in-memory table made
  // durable by the append-only log (hc-router's --ledger_dir).
  std::string backend = "memory";
  std::string dir;  // file backend: holds ledger.log and ledger.snap
  FsyncPolicy fsync = FsyncPolicy::kInterval;
  absl::Duration fsync_interval = absl::Milliseconds(100);
  // File backend: compact once the log exceeds max(this, snapshot size).
  uint64_t compact_min_bytes = 64ull << 20;
  // Redis: key prefix, so tests and deployments can share a server.
  std::string redis_prefix = "hc";
  absl::Duration redis_timeout = absl::Seconds(2);
  // Redis: connections in the pool (each serialises its own calls).
  int redis_connections = 4;
  // Idle expiry of conversations (see above); zero: never.
  absl::Duration conversation_ttl = absl::ZeroDuration();
  // Conversations one cache_salt may have (see above); 0: unlimited.
  uint64_t max_conversations_per_salt = 0;
  // Conversations a non-empty tenant may have over all its salts (see above),
  // asked at each AcquireLease of a new conversation so a reloaded keys file
  // applies at once; null or 0: unlimited. Must be thread-safe and must not
  // call into the ledger.
  std::function<uint64_t(std::string_view tenant)> tenant_conversation_limit;
  // Memory and file: how often the expiry sweep runs; each run examines at
  // most kExpirySweepBatch entries (under the table lock, so a sweep never
  // stalls turns for long; a full pass over N entries takes
  // N / kExpirySweepBatch runs).
  absl::Duration expiry_sweep_interval = absl::Seconds(1);
  // Memory and file, for tests: called on the sweeping thread after a sweep
  // pass once its effects are visible (memory: at the pass's end; file: once
  // the expiries it logged are written and applied), so a test waits on it
  // instead of polling. Must not call into the ledger.
  std::function<void()> on_sweep;
  // Lease expiry and last activity in the memory and file backends (default
  // absl::Now). Redis uses its server's clock instead (redis_ledger.h).
  Clock clock;
};

inline constexpr int kExpirySweepBatch = 1024;

// Opens the backend the options name. The file backend replays its snapshot
// and log first (a torn last record is dropped). INVALID_ARGUMENT for an
// unknown backend; UNAVAILABLE when Redis cannot be reached.
absl::StatusOr<std::unique_ptr<ConversationLedger>> OpenLedger(const LedgerOptions& options);

}  // namespace hc::router

#endif  // HC_ROUTER_LEDGER_LEDGER_H_
