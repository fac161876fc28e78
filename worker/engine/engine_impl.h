// Internal: the engine's implementation, split over engine.cc (API, thread,
// commands), engine_step.cc (the step and its scheduling actions: schedule
// running turns, grow their caches, admit waiting turns), engine_forward.cc
// (the forward, sample and emit actions) and engine_turns.cc (a turn's
// lifecycle: start, preempt, finish, fail). Include only from those files.
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

// Where a turn's computation starts.
enum class Resume {
  kFresh,      // from nothing: history + suffix
  kCommitted,  // from the expected committed state (a hit)
  kSnapshot,   // from the conversation's snapshot at a prefix of the history
};

// A turn inside the engine. Touched only by the engine thread once queued.
struct EngineTurn {
  TurnSpec req;
  std::shared_ptr<TurnObserver> observer;
  Sampler sampler{0};
  absl::Time submitted;
  absl::Time last_token;

  std::optional<cache::RequestId> cache_request;  // set while attached
  Resume resume = Resume::kFresh;
  RoundStamp base;  // the state computation starts from (empty when fresh)
  // The snapshot taken at req.snapshot_at, held by the cache request.
  std::optional<RoundStamp> snapshot;
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
  // The next chunk within `budget` tokens, ending at snapshot_at when it
  // would cross it, so the state there can be copied after the step.
  int ChunkLen(int budget) const {
    int64_t n = static_cast<int64_t>(std::min<size_t>(Remaining(), budget));
    if (req.snapshot_at.has_value() && !snapshot.has_value() && NumComputed() < *req.snapshot_at) {
      n = std::min(n, *req.snapshot_at - NumComputed());
    }
    return static_cast<int>(n);
  }
};

enum class AdmitOutcome { kAttached, kNoRoom, kEnded };

// What growing a running turn's cache for its next chunk did.
enum class GrowOutcome {
  kGrown,      // the cache holds the chunk (possibly after preempting newer turns)
  kPreempted,  // no room even after preempting every newer unscheduled turn:
               // the turn itself went back to the queue
  kFailed,     // alone and still too large: the turn failed and is gone
};

// The batch one step builds. The scheduling actions fill it in order
// (running turns, then admitted ones); forward and sample read it.
struct StepBatch {
  // Batch order: the model's sequences and logits rows. Each turn here is in
  // running_, attached, and has `scheduled` > 0 tokens to compute.
  std::vector<EngineTurn*> turns;
  int budget = 0;  // tokens the step may still schedule
  // A running turn was preempted for memory in this step: the step admits no
  // waiting turn, so neither the preempted turn (now at the queue's head) nor
  // one behind it takes back the memory just freed for the running turns.
  bool preempted = false;
};

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
  // One step: the actions below, in order. Engine thread only.
  void Step();
  // Schedule: decode tokens of running turns first (latency), then prefill
  // chunks, oldest first, while the budget lasts; grows each one's cache.
  void ScheduleRunning(StepBatch& batch);
  // The oldest running turn of the phase (decoding or prefilling) not yet
  // scheduled in this step; null when none is left.
  EngineTurn* NextToSchedule(bool decoding) const;
  // Grow caches: makes room for n more tokens of running turn t, preempting
  // the newest unscheduled running turns (possibly t) until it fits.
  GrowOutcome GrowRunning(EngineTurn* t, int n, StepBatch& batch);
  // Admit: attaches waiting turns in arrival order and grows their caches,
  // while budget, max_running and memory last.
  void AdmitWaiting(StepBatch& batch);
  AdmitOutcome Admit(EngineTurn* t);
  // Adds n tokens of t (attached, grown) to the batch.
  static void AddToBatch(EngineTurn* t, int n, StepBatch& batch);
  // Forward: runs the model over the batch into logits_. On error every turn
  // of the batch fails (and is gone); returns whether it ran.
  bool ForwardBatch(const StepBatch& batch);
  // Sample and emit: advances every turn of the batch past its computed
  // tokens; samples those whose chunk ended their context, streams the token
  // and finishes the turns that stop.
  void SampleAndEmit(const StepBatch& batch);
  // Emit: metrics and the observer's OnTokens for a newly sampled token.
  // `logits`: the row `s` was sampled from (for top_logprobs).
  void EmitToken(EngineTurn& t, const SampledToken& s, std::span<const float> logits,
                 absl::Time now);
  // Emit: OnStarted (once per turn) for a turn just admitted.
  void EmitStarted(EngineTurn& t);
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
