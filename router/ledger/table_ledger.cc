#include "router/ledger/table_ledger.h"

#include <utility>

#include "common/logging.h"
#include "common/status_macros.h"

namespace hc::router {

TableLedger::TableLedger(Clock clock)
    : clock_(clock ? std::move(clock) : Clock([] { return absl::Now(); })) {}

void TableLedger::AcquireLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                               RecordCallback done) {
  const std::string k = EncodeTableKey(key);
  absl::StatusOr<ConversationRecord> result;
  {
    absl::MutexLock lock(&mu_);
    result = table_.AcquireLease(k, holder, clock_(), ttl);
  }
  std::move(done)(std::move(result));
}

void TableLedger::RenewLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                             StatusCallback done) {
  const std::string k = EncodeTableKey(key);
  absl::Status result;
  {
    absl::MutexLock lock(&mu_);
    result = table_.RenewLease(k, holder, clock_(), ttl);
  }
  std::move(done)(std::move(result));
}

void TableLedger::Commit(const LedgerKey& key, std::string_view holder, CommitRequest commit,
                         StatusCallback done) {
  const std::string k = EncodeTableKey(key);
  absl::Status result;
  {
    absl::MutexLock lock(&mu_);
    result = table_.Commit(k, holder, commit, clock_());
  }
  std::move(done)(std::move(result));
}

void TableLedger::ReleaseLease(const LedgerKey& key, std::string_view holder,
                               StatusCallback done) {
  const std::string k = EncodeTableKey(key);
  {
    absl::MutexLock lock(&mu_);
    table_.ReleaseLease(k, holder);
  }
  std::move(done)(absl::OkStatus());
}

void TableLedger::Get(const LedgerKey& key, RecordCallback done) {
  const std::string k = EncodeTableKey(key);
  absl::StatusOr<ConversationRecord> result;
  {
    absl::MutexLock lock(&mu_);
    result = table_.Get(k);
  }
  std::move(done)(std::move(result));
}

void TableLedger::Delete(const LedgerKey& key, StatusCallback done) {
  const std::string k = EncodeTableKey(key);
  absl::Status result;
  {
    absl::MutexLock lock(&mu_);
    result = table_.CheckDelete(k, clock_());
    if (result.ok()) table_.Erase(k);
  }
  std::move(done)(std::move(result));
}

void TableLedger::CountConversations(CountCallback done) {
  uint64_t n;
  {
    absl::MutexLock lock(&mu_);
    n = table_.committed();
  }
  std::move(done)(n);
}

}  // namespace hc::router
