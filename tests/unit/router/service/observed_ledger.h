// A ledger for router tests that forwards to a memory ledger and lets the
// test wait on what the turns did to it.
#ifndef HC_TESTS_UNIT_ROUTER_SERVICE_OBSERVED_LEDGER_H_
#define HC_TESTS_UNIT_ROUTER_SERVICE_OBSERVED_LEDGER_H_

#include <memory>
#include <string_view>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "router/ledger/ledger.h"
#include "router/ledger/memory_ledger.h"

namespace hc::router::testing {

// Forwards to a memory ledger, records the clock reading of every lease
// renewal and counts lease releases (tests wait on both), and can refuse
// renewals as if the lease had been taken over.
class ObservedLedger final : public ConversationLedger {
 public:
  explicit ObservedLedger(Clock clock) : clock_(clock), inner_(NewMemoryLedger(clock)) {}

  void AcquireLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                    RecordCallback done) override {
    inner_->AcquireLease(key, holder, ttl, std::move(done));
  }
  void RenewLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                  StatusCallback done) override {
    bool refuse;
    {
      absl::MutexLock lock(&mu_);
      last_renewal_ = clock_();
      refuse = refuse_renewals_;
    }
    if (refuse) return std::move(done)(absl::AbortedError("taken over (test)"));
    inner_->RenewLease(key, holder, ttl, std::move(done));
  }
  void Commit(const LedgerKey& key, std::string_view holder, CommitRequest commit,
              StatusCallback done) override {
    inner_->Commit(key, holder, std::move(commit), std::move(done));
  }
  void ReleaseLease(const LedgerKey& key, std::string_view holder, StatusCallback done) override {
    inner_->ReleaseLease(key, holder, [this, done = std::move(done)](absl::Status s) mutable {
      {
        absl::MutexLock lock(&mu_);
        ++releases_;
      }
      std::move(done)(std::move(s));
    });
  }
  void Get(const LedgerKey& key, RecordCallback done) override {
    inner_->Get(key, std::move(done));
  }
  void Delete(const LedgerKey& key, StatusCallback done) override {
    inner_->Delete(key, std::move(done));
  }
  void CountConversations(CountCallback done) override {
    inner_->CountConversations(std::move(done));
  }

  void RefuseRenewals() {
    absl::MutexLock lock(&mu_);
    refuse_renewals_ = true;
  }
  // Waits until `n` lease releases have taken effect (the memory ledger
  // answered them); false after `timeout`.
  bool AwaitReleases(int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto released = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return releases_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&released), timeout);
  }
  // Blocks until a renewal has happened with the clock at `t` or later.
  void AwaitRenewalAtOrAfter(absl::Time t) {
    absl::MutexLock lock(&mu_);
    auto renewed = [this, t]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return last_renewal_ >= t; };
    mu_.Await(absl::Condition(&renewed));
  }

 private:
  const Clock clock_;
  const std::unique_ptr<ConversationLedger> inner_;
  absl::Mutex mu_;
  absl::Time last_renewal_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool refuse_renewals_ ABSL_GUARDED_BY(mu_) = false;
  int releases_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hc::router::testing

#endif  // HC_TESTS_UNIT_ROUTER_SERVICE_OBSERVED_LEDGER_H_
