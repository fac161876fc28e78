// The blocking forms of ConversationLedger's operations: each starts the
// asynchronous operation and waits for its `done`.
#include <optional>

#include "absl/synchronization/notification.h"
#include "router/ledger/ledger.h"

namespace hc::router {
namespace {

// Runs `start(done)` and waits for `done(result)`.
template <typename Result, typename Start>
Result Wait(Start start) {
  std::optional<Result> result;
  absl::Notification ready;
  start([&](Result r) {
    result.emplace(std::move(r));
    ready.Notify();
  });
  ready.WaitForNotification();
  return *std::move(result);
}

}  // namespace

absl::StatusOr<ConversationRecord> ConversationLedger::AcquireLease(const LedgerKey& key,
                                                                    std::string_view holder,
                                                                    absl::Duration ttl) {
  return Wait<absl::StatusOr<ConversationRecord>>(
      [&](RecordCallback done) { AcquireLease(key, holder, ttl, std::move(done)); });
}

absl::Status ConversationLedger::RenewLease(const LedgerKey& key, std::string_view holder,
                                            absl::Duration ttl) {
  return Wait<absl::Status>(
      [&](StatusCallback done) { RenewLease(key, holder, ttl, std::move(done)); });
}

absl::Status ConversationLedger::Commit(const LedgerKey& key, std::string_view holder,
                                        const CommitRequest& commit) {
  return Wait<absl::Status>(
      [&](StatusCallback done) { Commit(key, holder, commit, std::move(done)); });
}

absl::Status ConversationLedger::ReleaseLease(const LedgerKey& key, std::string_view holder) {
  return Wait<absl::Status>(
      [&](StatusCallback done) { ReleaseLease(key, holder, std::move(done)); });
}

absl::StatusOr<ConversationRecord> ConversationLedger::Get(const LedgerKey& key) {
  return Wait<absl::StatusOr<ConversationRecord>>(
      [&](RecordCallback done) { Get(key, std::move(done)); });
}

absl::Status ConversationLedger::Delete(const LedgerKey& key) {
  return Wait<absl::Status>([&](StatusCallback done) { Delete(key, std::move(done)); });
}

absl::StatusOr<uint64_t> ConversationLedger::CountConversations() {
  return Wait<absl::StatusOr<uint64_t>>(
      [&](CountCallback done) { CountConversations(std::move(done)); });
}

}  // namespace hc::router
