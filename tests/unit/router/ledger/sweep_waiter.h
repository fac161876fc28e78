// Counts the memory and file ledgers' expiry sweeps (LedgerOptions::on_sweep)
// so that a test waits for the state a sweep leaves instead of sleeping.
#ifndef HC_TESTS_UNIT_ROUTER_LEDGER_SWEEP_WAITER_H_
#define HC_TESTS_UNIT_ROUTER_LEDGER_SWEEP_WAITER_H_

#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace hc::router::testing {

class SweepWaiter {
 public:
  // For LedgerOptions::on_sweep; the waiter must outlive the ledger.
  std::function<void()> Hook() {
    return [this] {
      absl::MutexLock lock(&mu_);
      ++sweeps_;
    };
  }

  // Checks `done` now and again after each sweep until it holds; false when
  // it still does not after `timeout`.
  bool WaitUntil(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(30)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      int seen;
      {
        absl::MutexLock lock(&mu_);
        seen = sweeps_;
      }
      if (done()) return true;
      absl::MutexLock lock(&mu_);
      auto next = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return sweeps_ > seen; };
      if (!mu_.AwaitWithDeadline(absl::Condition(&next), deadline)) return false;
    }
  }

 private:
  absl::Mutex mu_;
  int sweeps_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hc::router::testing

#endif  // HC_TESTS_UNIT_ROUTER_LEDGER_SWEEP_WAITER_H_
