// A ConversationLedger over one LedgerTable behind one mutex. The memory
// backend is exactly this: every operation is a short in-memory step, so each
// runs its `done` inline, after the lock is released. The file backend adds
// durability by overriding the two Persist hooks, which run under the lock
// after the change was validated and before it is applied, so a failed write
// changes nothing.
//
// Thread-safety: all methods are thread-safe (one mutex).
#ifndef HC_ROUTER_LEDGER_TABLE_LEDGER_H_
#define HC_ROUTER_LEDGER_TABLE_LEDGER_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "router/ledger/ledger.h"
#include "router/ledger/ledger_table.h"

namespace hc::router {

class TableLedger : public ConversationLedger {
 public:
  // A null clock means absl::Now.
  explicit TableLedger(Clock clock);

  using ConversationLedger::AcquireLease;
  using ConversationLedger::Commit;
  using ConversationLedger::CountConversations;
  using ConversationLedger::Delete;
  using ConversationLedger::Get;
  using ConversationLedger::ReleaseLease;
  using ConversationLedger::RenewLease;

  void AcquireLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                    RecordCallback done) override;
  void RenewLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                  StatusCallback done) override;
  void Commit(const LedgerKey& key, std::string_view holder, CommitRequest commit,
              StatusCallback done) override;
  void ReleaseLease(const LedgerKey& key, std::string_view holder, StatusCallback done) override;
  void Get(const LedgerKey& key, RecordCallback done) override;
  void Delete(const LedgerKey& key, StatusCallback done) override;
  void CountConversations(CountCallback done) override;

 protected:
  // The synchronous steps the callbacks report (each takes mu_).
  absl::Status CommitNow(const LedgerKey& key, std::string_view holder, const CommitRequest& commit);
  absl::Status DeleteNow(const LedgerKey& key);

  // Record a validated commit (at `now`) or delete of table key `k` before
  // it is applied; an error aborts the operation with nothing changed.
  virtual absl::Status PersistCommit(const std::string& k, const CommitRequest& commit,
                                     absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return absl::OkStatus();
  }
  virtual absl::Status PersistDelete(const std::string& k) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return absl::OkStatus();
  }
  // After a commit or delete was applied (e.g. to compact a log).
  virtual void AfterChange() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {}

  const Clock clock_;
  absl::Mutex mu_;
  LedgerTable table_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hc::router

#endif  // HC_ROUTER_LEDGER_TABLE_LEDGER_H_
