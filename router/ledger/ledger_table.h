// LedgerTable: the in-memory ledger state and its rules (leases, round
// checks), without locking or persistence. The memory and file backends wrap
// it with a mutex; the file backend also logs every mutation before applying.
//
// Thread-safety: none; callers serialise access.
#ifndef HC_ROUTER_LEDGER_LEDGER_TABLE_H_
#define HC_ROUTER_LEDGER_LEDGER_TABLE_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "router/ledger/ledger.h"

namespace hc::router {

// The table's key: 4-byte salt length, salt, conversation id (unambiguous for
// any salt bytes).
std::string EncodeTableKey(const LedgerKey& key);
LedgerKey DecodeTableKey(std::string_view encoded);

class LedgerTable {
 public:
  struct Entry {
    uint64_t round = 0;
    std::vector<uint32_t> tokens;
    std::vector<LedgerMessage> messages;
    WorkerState worker;
    Lease lease;
    absl::Time last_activity = absl::InfinitePast();
  };

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
  absl::StatusOr<ConversationRecord> Get(const std::string& key) const;
  absl::Status CheckDelete(const std::string& key, absl::Time now) const;
  void Erase(const std::string& key);
  uint64_t committed() const { return committed_; }

  // Replaces or inserts a committed entry (snapshot replay).
  void Put(const std::string& key, Entry entry);
  const absl::flat_hash_map<std::string, Entry>& entries() const { return entries_; }

 private:
  absl::flat_hash_map<std::string, Entry> entries_;
  uint64_t committed_ = 0;  // entries with round > 0
};

}  // namespace hc::router

#endif  // HC_ROUTER_LEDGER_LEDGER_TABLE_H_
