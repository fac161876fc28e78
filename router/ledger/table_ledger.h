// A ConversationLedger over one LedgerTable behind one mutex: the memory
// backend. Every operation is a short in-memory step, so each runs its `done`
// inline, after the lock is released. (The file backend has its own writer
// thread and queue: file_ledger.h.)
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

 private:
  const Clock clock_;
  absl::Mutex mu_;
  LedgerTable table_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hc::router

#endif  // HC_ROUTER_LEDGER_TABLE_LEDGER_H_
