// LedgerTable: the in-memory ledger state and its rules (leases, round
// checks), without locking or persistence. The memory and file backends wrap
// it with a mutex; the file backend also logs every mutation before applying.
//
// Thread-safety: none; callers serialise access.
#ifndef HC_ROUTER_LEDGER_LEDGER_TABLE_H_
#define HC_ROUTER_LEDGER_LEDGER_TABLE_H_

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "router/ledger/ledger.h"

namespace hc::router {

// The table's key (also the file backend's on-disk key): 4-byte salt length,
// salt, conversation id (unambiguous for any salt bytes). A non-empty tenant
// sets the length word's top bit (salts are far shorter) and follows the salt
// as 4-byte length + tenant, so the empty tenant encodes exactly as before
// tenants existed.
std::string EncodeTableKey(const LedgerKey& key);
LedgerKey DecodeTableKey(std::string_view encoded);

struct TableLimits {
  absl::Duration conversation_ttl = absl::ZeroDuration();  // zero: never expire
  uint64_t max_conversations_per_salt = 0;                 // 0: unlimited
  // LedgerOptions::tenant_conversation_limit.
  std::function<uint64_t(std::string_view tenant)> tenant_conversation_limit;
};

// The retry delay a tenant-cap refusal carries: a slot frees only when a
// conversation is deleted or expires, which the ledger cannot predict.
inline constexpr absl::Duration kTenantCapRetryDelay = absl::Minutes(1);
// The refusal of a new conversation past `limit` (shared by the backends).
absl::Status TenantCapRefused(uint64_t live, uint64_t limit);

// A rewrite commit's first step (CommitRequest::rewrite_from): keeps the
// first `from` tokens and the messages that end by then.
void TruncateForRewrite(uint32_t from, std::vector<uint32_t>& tokens,
                        std::vector<LedgerMessage>& messages);

// Records the usage of round `round` + 1 (a commit of expected round `round`)
// in `usage` (ConversationRecord::usage): earlier rounds it lacks become
// unknown. A conversation that never had a usage stays empty when this one
// is unknown too, so ledgers of an older version cost nothing more.
void RecordRoundUsage(uint64_t round, const std::optional<RoundUsage>& round_usage,
                      std::vector<std::optional<RoundUsage>>& usage);

class LedgerTable {
 public:
  LedgerTable() = default;
  explicit LedgerTable(TableLimits limits) : limits_(std::move(limits)) {}

  struct Entry {
    uint64_t round = 0;
    std::vector<uint32_t> tokens;
    std::vector<LedgerMessage> messages;
    WorkerState worker;
    Lease lease;
    absl::Time last_activity = absl::InfinitePast();
    std::vector<std::optional<RoundUsage>> usage;  // ConversationRecord::usage
  };

  // Takes the lease (ledger.h). RESOURCE_EXHAUSTED when the key does not
  // exist and its salt has max_conversations_per_salt entries (committed or
  // leased), or its tenant its limit's number. An expired entry (Expired) must be expired by the
  // caller first.
  absl::StatusOr<ConversationRecord> AcquireLease(const std::string& key, std::string_view holder,
                                                  absl::Time now, absl::Duration ttl);
  // ABORTED unless `holder` holds the lease; then its expiry becomes now + ttl.
  absl::Status RenewLease(const std::string& key, std::string_view holder, absl::Time now,
                          absl::Duration ttl);
  // Checks what Commit checks, changing nothing.
  absl::Status CheckCommit(const std::string& key, std::string_view holder,
                           const CommitRequest& commit) const;
  // CheckCommit, then applies (holder empty: replay, no lease check).
  absl::Status Commit(const std::string& key, std::string_view holder, const CommitRequest& commit,
                      absl::Time now);
  void ReleaseLease(const std::string& key, std::string_view holder);
  // NOT_FOUND also for an expired entry (not yet erased).
  absl::StatusOr<ConversationRecord> Get(const std::string& key, absl::Time now) const;
  absl::Status CheckDelete(const std::string& key, absl::Time now) const;
  void Erase(const std::string& key);
  uint64_t committed() const { return committed_; }

  // Whether `key` is a committed conversation idle past conversation_ttl at
  // `now` with no live lease (always false without a TTL).
  bool Expired(const std::string& key, absl::Time now) const;
  // Erase, counted as an expiry.
  void Expire(const std::string& key);

  struct SweepResult {
    std::vector<std::string> expired;  // for the caller to Expire (file: after logging it)
    std::vector<std::string> stale;    // lease-only entries whose lease ended: Erase
  };
  // Examines up to `max_entries` entries, resuming where the previous sweep
  // stopped (a full pass over N entries takes N / max_entries sweeps; entries
  // inserted meanwhile, or a rehash, can delay one to the next pass).
  SweepResult Sweep(absl::Time now, int max_entries);

  LedgerCounters counters() const { return LedgerCounters{expired_, refused_}; }

  // Replaces or inserts a committed entry (snapshot replay).
  void Put(const std::string& key, Entry entry);
  const absl::flat_hash_map<std::string, Entry>& entries() const { return entries_; }

 private:
  bool ExpiredEntry(const Entry& e, absl::Time now) const;
  Entry& Insert(const std::string& key);  // entries_[key], counting a new key in its salt/tenant
  void Remove(absl::flat_hash_map<std::string, Entry>::iterator it);

  TableLimits limits_;
  absl::flat_hash_map<std::string, Entry> entries_;
  uint64_t committed_ = 0;  // entries with round > 0
  // Entries (committed or leased) per (tenant, salt) and per non-empty
  // tenant, for the caps; ones with none are removed.
  absl::flat_hash_map<std::string, uint64_t> per_salt_;
  absl::flat_hash_map<std::string, uint64_t> per_tenant_;
  std::string sweep_cursor_;  // the key the next sweep starts at ("" : the beginning)
  uint64_t expired_ = 0;
  uint64_t refused_ = 0;
};

}  // namespace hc::router

#endif  // HC_ROUTER_LEDGER_LEDGER_TABLE_H_
