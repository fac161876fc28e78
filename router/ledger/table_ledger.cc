#include "router/ledger/table_ledger.h"

#include <utility>

#include "common/logging.h"
#include "common/status_macros.h"

namespace hc::router {

TableLedger::TableLedger(Clock clock)
    : clock_(clock ? std::move(clock) : Clock([] { return absl::Now(); })),
      sweep_interval_(absl::Seconds(1)) {}

TableLedger::TableLedger(const LedgerOptions& options)
    : clock_(options.clock ? options.clock : Clock([] { return absl::Now(); })),
      sweep_interval_(options.expiry_sweep_interval),
      on_sweep_(options.on_sweep),
      table_(TableLimits{options.conversation_ttl, options.max_conversations_per_salt,
                         options.tenant_conversation_limit}) {
  if (options.conversation_ttl > absl::ZeroDuration()) {
    sweeper_ = std::thread([this] { SweepLoop(); });
  }
}

TableLedger::~TableLedger() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (sweeper_.joinable()) sweeper_.join();
}

// Each round holds the lock for at most kExpirySweepBatch cheap checks.
void TableLedger::SweepLoop() {
  absl::MutexLock lock(&mu_);
  while (!mu_.AwaitWithTimeout(absl::Condition(&stopping_), sweep_interval_)) {
    LedgerTable::SweepResult r = table_.Sweep(clock_(), kExpirySweepBatch);
    for (const std::string& k : r.expired) table_.Expire(k);
    for (const std::string& k : r.stale) table_.Erase(k);
    if (on_sweep_) on_sweep_();  // must not call into the ledger (ledger.h)
  }
}

void TableLedger::AcquireLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                               RecordCallback done) {
  const std::string k = EncodeTableKey(key);
  absl::StatusOr<ConversationRecord> result;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_();
    if (table_.Expired(k, now)) table_.Expire(k);
    result = table_.AcquireLease(k, holder, now, ttl);
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

void TableLedger::ReleaseLease(const LedgerKey& key, std::string_view holder, StatusCallback done) {
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
    result = table_.Get(k, clock_());
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

LedgerCounters TableLedger::counters() const {
  absl::MutexLock lock(&mu_);
  return table_.counters();
}

}  // namespace hc::router
