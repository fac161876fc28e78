#include "router/ledger/table_ledger.h"

#include <utility>

#include "common/logging.h"
#include "common/status_macros.h"

namespace hc::router {

TableLedger::TableLedger(Clock clock)
    : clock_(clock ? std::move(clock) : Clock([] { return absl::Now(); })) {}

absl::StatusOr<ConversationRecord> TableLedger::AcquireLease(const LedgerKey& key,
                                                             std::string_view holder,
                                                             absl::Duration ttl) {
  const std::string k = EncodeTableKey(key);
  absl::MutexLock lock(&mu_);
  return table_.AcquireLease(k, holder, clock_(), ttl);
}

absl::Status TableLedger::Commit(const LedgerKey& key, std::string_view holder,
                                 const CommitRequest& commit) {
  const std::string k = EncodeTableKey(key);
  absl::MutexLock lock(&mu_);
  HC_RETURN_IF_ERROR(table_.CheckCommit(k, holder, commit));
  const absl::Time now = clock_();
  HC_RETURN_IF_ERROR(PersistCommit(k, commit, now));
  HC_CHECK_OK(table_.Commit(k, holder, commit, now));
  AfterChange();
  return absl::OkStatus();
}

absl::Status TableLedger::ReleaseLease(const LedgerKey& key, std::string_view holder) {
  const std::string k = EncodeTableKey(key);
  absl::MutexLock lock(&mu_);
  table_.ReleaseLease(k, holder);
  return absl::OkStatus();
}

absl::StatusOr<ConversationRecord> TableLedger::Get(const LedgerKey& key) {
  const std::string k = EncodeTableKey(key);
  absl::MutexLock lock(&mu_);
  return table_.Get(k);
}

absl::Status TableLedger::Delete(const LedgerKey& key) {
  const std::string k = EncodeTableKey(key);
  absl::MutexLock lock(&mu_);
  HC_RETURN_IF_ERROR(table_.CheckDelete(k, clock_()));
  HC_RETURN_IF_ERROR(PersistDelete(k));
  table_.Erase(k);
  AfterChange();
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> TableLedger::CountConversations() {
  absl::MutexLock lock(&mu_);
  return table_.committed();
}

}  // namespace hc::router
