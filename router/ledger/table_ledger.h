// A ConversationLedger over one LedgerTable behind one mutex: the memory
// backend. Every operation is a short in-memory step, so each runs its `done`
// inline, after the lock is released. (The file backend has its own writer
// thread and queue: file_ledger.h.)
//
// Expiry (conversation_ttl): AcquireLease forgets an expired conversation
// before leasing it (the turn starts at round 0), Get and Delete see it as
// absent, and with a TTL a sweep thread examines kExpirySweepBatch entries
// every expiry_sweep_interval, erasing expired conversations and lease-only
// entries whose lease ended (a turn that never ended), so the memory is
// reclaimed without traffic.
//
// Thread-safety: all methods are thread-safe (one mutex).
#ifndef HC_ROUTER_LEDGER_TABLE_LEDGER_H_
#define HC_ROUTER_LEDGER_TABLE_LEDGER_H_

#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "router/ledger/ledger.h"
#include "router/ledger/ledger_table.h"

namespace hc::router {

class TableLedger : public ConversationLedger {
 public:
  // A null clock means absl::Now.
  explicit TableLedger(Clock clock);
  // Uses the options' clock, conversation_ttl, max_conversations_per_salt
  // and expiry_sweep_interval.
  explicit TableLedger(const LedgerOptions& options);
  ~TableLedger() override;

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
  LedgerCounters counters() const override;

 private:
  void SweepLoop();

  const Clock clock_;
  const absl::Duration sweep_interval_;
  const std::function<void()> on_sweep_;
  mutable absl::Mutex mu_;
  LedgerTable table_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread sweeper_;  // only with a conversation_ttl
};

}  // namespace hc::router

#endif  // HC_ROUTER_LEDGER_TABLE_LEDGER_H_
