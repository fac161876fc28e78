// Drives `concurrency` conversations, each an endless chain of turns
// (AcquireLease -> Commit -> next turn, all through the asynchronous
// callbacks: no thread per turn, as in the router), for `duration`, and
// returns committed turns per second.
#ifndef HC_TESTS_BENCH_ROUTER_TURN_DRIVER_H_
#define HC_TESTS_BENCH_ROUTER_TURN_DRIVER_H_

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "router/ledger/ledger.h"

namespace hc::router::bench {

class TurnDriver {
 public:
  TurnDriver(ConversationLedger& ledger, std::string prefix, int tokens_per_turn)
      : ledger_(ledger), prefix_(std::move(prefix)), tokens_(tokens_per_turn, 7) {}

  double Run(int concurrency, absl::Duration duration) {
    {
      absl::MutexLock lock(&mu_);
      running_ = concurrency;
    }
    stop_at_ = absl::Now() + duration;
    const absl::Time start = absl::Now();
    for (int c = 0; c < concurrency; ++c) Turn(c);
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int* n) { return *n == 0; }, &running_));
    const double secs = absl::ToDoubleSeconds(absl::Now() - start);
    if (errors_ > 0)
      std::printf("  (%llu turns failed)\n", static_cast<unsigned long long>(errors_.load()));
    return static_cast<double>(turns_.exchange(0)) / secs;
  }

 private:
  void Turn(int c) {
    if (absl::Now() >= stop_at_) {
      absl::MutexLock lock(&mu_);
      --running_;
      return;
    }
    const LedgerKey key{"bench", prefix_ + std::to_string(c)};
    ledger_.AcquireLease(
        key, "router", absl::Minutes(1), [this, c, key](absl::StatusOr<ConversationRecord> rec) {
          if (!rec.ok()) {
            ++errors_;
            Turn(c);
            return;
          }
          CommitRequest commit;
          commit.expected_round = rec->round;
          commit.appended_tokens = tokens_;
          const uint32_t begin = static_cast<uint32_t>(rec->tokens.size());
          commit.appended_messages = {LedgerMessage{
              Role::kUser, begin, begin + static_cast<uint32_t>(tokens_.size()), "m"}};
          ledger_.Commit(key, "router", std::move(commit), [this, c](absl::Status s) {
            if (s.ok())
              ++turns_;
            else
              ++errors_;
            Turn(c);
          });
        });
  }

  ConversationLedger& ledger_;
  const std::string prefix_;
  const std::vector<uint32_t> tokens_;
  absl::Time stop_at_;
  std::atomic<uint64_t> turns_{0};
  std::atomic<uint64_t> errors_{0};
  absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hc::router::bench

#endif  // HC_TESTS_BENCH_ROUTER_TURN_DRIVER_H_
