#include "router/ledger/memory_ledger.h"

#include "absl/synchronization/mutex.h"
#include "router/ledger/ledger_table.h"

namespace hc::router {
namespace {

class MemoryLedger final : public ConversationLedger {
 public:
  explicit MemoryLedger(Clock clock) : clock_(std::move(clock)) {}

  absl::StatusOr<ConversationRecord> AcquireLease(const LedgerKey& key, std::string_view holder,
                                                  absl::Duration ttl) override {
    const std::string k = EncodeTableKey(key);
    absl::MutexLock lock(&mu_);
    return table_.AcquireLease(k, holder, clock_(), ttl);
  }
  absl::Status Commit(const LedgerKey& key, std::string_view holder,
                      const CommitRequest& commit) override {
    const std::string k = EncodeTableKey(key);
    absl::MutexLock lock(&mu_);
    return table_.Commit(k, holder, commit, clock_());
  }
  absl::Status ReleaseLease(const LedgerKey& key, std::string_view holder) override {
    const std::string k = EncodeTableKey(key);
    absl::MutexLock lock(&mu_);
    table_.ReleaseLease(k, holder);
    return absl::OkStatus();
  }
  absl::StatusOr<ConversationRecord> Get(const LedgerKey& key) override {
    const std::string k = EncodeTableKey(key);
    absl::MutexLock lock(&mu_);
    return table_.Get(k);
  }
  absl::Status Delete(const LedgerKey& key) override {
    const std::string k = EncodeTableKey(key);
    absl::MutexLock lock(&mu_);
    if (absl::Status s = table_.CheckDelete(k, clock_()); !s.ok()) return s;
    table_.Erase(k);
    return absl::OkStatus();
  }
  absl::StatusOr<uint64_t> CountConversations() override {
    absl::MutexLock lock(&mu_);
    return table_.committed();
  }

 private:
  const Clock clock_;
  absl::Mutex mu_;
  LedgerTable table_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<ConversationLedger> NewMemoryLedger(Clock clock) {
  if (!clock) clock = [] { return absl::Now(); };
  return std::make_unique<MemoryLedger>(std::move(clock));
}

}  // namespace hc::router
