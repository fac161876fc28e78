// Internal: the engine's implementation, split over engine.cc (API, thread,
// commands) and engine_step.cc (scheduling, forward, sampling, commit).
// Include only from those files and tests.
#ifndef HC_WORKER_ENGINE_ENGINE_IMPL_H_
#define HC_WORKER_ENGINE_ENGINE_IMPL_H_

#include <algorithm>
#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/text/stop_matcher.h"
#include "common/token_hash.h"
#include "worker/engine/engine.h"

namespace hc::engine::internal {

using cache::ConversationKey;
using cache::RoundStamp;

// A turn inside the engine. Touched only by the engine thread once queued.
struct EngineTurn {
  TurnSpec req;
  std::shared_ptr<TurnObserver> observer;
  Sampler sampler{0};
  absl::Time submitted;
  absl::Time last_token;

  std::optional<cache::RequestId> cache_request;  // set while attached
  bool hit = false;                               // attached to the expected committed state
  RoundStamp base;  // the state computation starts from (empty when fresh)
  // Tokens after the base: the uncomputed context, then every sampled token.
  // tokens[0, next) have KV and Mamba state in the request's blocks and slot.
  std::vector<int32_t> tokens;
  size_t next = 0;
  uint64_t hash = kEmptyTokenHash;  // TokenHash of base tokens + tokens[0, next)
  std::vector<int32_t> generated;
  // Stop strings: the automaton (built in Submit, off the engine thread) fed
  // each generated token's bytes, and the byte offset at which each generated
  // token ends.
  StopMatcher stop;
  std::vector<int64_t> token_ends;
  bool started = false;
  bool admitted_once = false;
  int scheduled = 0;  // tokens scheduled in the current step

  int64_t NumComputed() const { return base.num_tokens + static_cast<int64_t>(next); }
  int64_t ContextLen() const { return base.num_tokens + static_cast<int64_t>(tokens.size()); }
  size_t Remaining() const { return tokens.size() - next; }
};

enum class AdmitOutcome { kAttached, kNoRoom, kEnded };

struct StopDecision {
  std::string reason;  // "stop" or "length"
  std::optional<StopStringCut> cut;
};

class EngineImpl final : public Engine {
 public:
  explicit EngineImpl(const EngineOptions& options)
      : options_(options), vocab_(options.model->vocab_size()), rng_(options.seed) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~EngineImpl() override { Stop(); }

  absl::Status Submit(TurnSpec turn, std::shared_ptr<TurnObserver> observer) override;
  void Cancel(const std::string& request_id) override;
  void Forget(const ConversationKey& key, absl::AnyInvocable<void(bool) &&> done) override;
  void Drain() override {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    load_.draining = true;
  }
  bool AwaitIdle(absl::Duration timeout) override {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(this, &EngineImpl::IdleLocked), timeout);
  }
  void Stop() override;
  EngineLoad Load() const override {
    absl::MutexLock lock(&mu_);
    EngineLoad load = load_;
    load.num_waiting = num_waiting_;
    load.max_waiting = options_.max_waiting;
    return load;
  }

 private:
  struct Command {
    enum Kind { kCancel, kForget } kind;
    std::string request_id;
    ConversationKey key;
    absl::AnyInvocable<void(bool) &&> forgotten;  // kForget: called once with the result
  };

  bool IdleLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return inbox_.empty() && active_ids_.empty();
  }
  bool HasInputLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || !inbox_.empty() || !commands_.empty();
  }
  absl::Status Validate(const TurnSpec& turn) const;

  // Engine thread.
  void Loop();
  void RunCommand(Command& cmd);
  void Step();
  bool ScheduleRunning(EngineTurn* t, int* budget, std::vector<EngineTurn*>& batch);
  AdmitOutcome Admit(EngineTurn* t);
  void Finish(EngineTurn* t, const StopDecision& stop);
  void Fail(EngineTurn* t, const absl::Status& status);
  void Preempt(EngineTurn* t);
  // Bookkeeping only: removes a finished turn from the queues and active sets. Its cache
  // request must already be committed or discarded (Finish, Fail).
  void Retire(EngineTurn* t);
  // Moves t, the head of waiting_, to the back of running_.
  void StartRunning(EngineTurn* t);
  // Whether the turn ends with its last sampled token; feeds its bytes to the
  // stop-string matcher.
  std::optional<StopDecision> CheckStop(EngineTurn& t) const;
  void PublishLoad();

  const EngineOptions options_;
  const int vocab_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<EngineTurn>> inbox_ ABSL_GUARDED_BY(mu_);
  std::vector<Command> commands_ ABSL_GUARDED_BY(mu_);
  // Conversations and request ids with a queued or running turn.
  absl::flat_hash_set<ConversationKey> active_keys_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> active_ids_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  // Turns in inbox_ and waiting_: what max_waiting bounds. Changed under mu_
  // together with the queues (Submit, admission, preemption, Retire), so
  // Submit's check against max_waiting is exact.
  int num_waiting_ ABSL_GUARDED_BY(mu_) = 0;
  EngineLoad load_ ABSL_GUARDED_BY(mu_);

  // Engine thread only: admission order.
  std::list<std::unique_ptr<EngineTurn>> running_;
  std::deque<std::unique_ptr<EngineTurn>> waiting_;
  std::vector<float> logits_;
  std::vector<ForwardSeq> seqs_;
};

}  // namespace hc::engine::internal

#endif  // HC_WORKER_ENGINE_ENGINE_IMPL_H_
