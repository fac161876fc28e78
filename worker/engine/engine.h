// The worker engine: one thread owns the cache, the model and every running
// request; other threads (gRPC) only submit turns, cancel them and read
// snapshots. Continuous batching with chunked prefill: each step schedules
// decode tokens first, then prefill chunks, up to a token budget; admission is
// bounded by KV blocks and Mamba slots (evicting idle committed states first,
// then preempting the newest running request by recompute). The queue in
// front of admission is bounded too (max_waiting): Submit refuses a turn at
// once rather than letting a flood of turns queue without limit.
//
// No call blocks on the engine thread: Submit, Cancel, Forget, Drain and
// Load take the engine's mutex only for bookkeeping, never across a step, so
// they are safe on gRPC callback threads. Forget reports its result through
// a callback run on the engine thread.
//
// Usage:
//   auto engine = Engine::Create(options).value();
//   engine->Submit(turn, observer);       // any thread
//   engine->Cancel("request-id");         // any thread; takes effect within a step
//   engine->Forget(key, [](bool forgotten) {...});  // any thread; done on the engine thread
//   engine->Drain(); engine->Stop();
#ifndef HC_WORKER_ENGINE_ENGINE_H_
#define HC_WORKER_ENGINE_ENGINE_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/cache/conversation_cache.h"
#include "worker/engine/model_runner.h"
#include "worker/engine/turn.h"

namespace hc::engine {

struct EngineOptions {
  ModelRunner* model = nullptr;               // not owned; used by the engine thread only
  cache::ConversationCache* cache = nullptr;  // not owned; used by the engine thread only
  EngineMetricsSink* metrics = nullptr;       // optional, not owned
  int max_batch_tokens = 512;                 // token budget of one step (chunked prefill)
  int max_running = 64;                       // running requests at once
  // Turns queued for admission (submitted and not yet running, including
  // turns preempted back to the queue): Submit refuses a new turn with
  // RESOURCE_EXHAUSTED once this many wait. 0: unbounded. hc-worker sets it
  // from --max_waiting.
  int max_waiting = 256;
  int max_model_len = 4096;  // context limit: history + suffix + generated
  int eos_token_id = -1;     // -1: none
  // The bytes a generated token adds to the reply text (special tokens: none),
  // for stop strings; called on the engine thread once per generated token of
  // a turn with stop strings. The view must stay valid while the engine runs.
  // Null: stop strings are rejected with INVALID_ARGUMENT.
  std::function<std::string_view(int32_t)> token_bytes;
  uint64_t seed = 0x5eed;  // seeds turns that bring no seed
  // Threads of the intra-op pool (common/intra_op.h) the engine thread
  // creates and binds for its lifetime, so that every kernel it runs — the
  // model's rank 0 forward, sampling — splits over them. 1: no pool. hc-worker
  // sets it from --threads (rank 0's share with --tp; the other ranks' pools
  // belong to their own threads, TensorParallelModelOptions::rank_threads).
  int intra_op_threads = 1;
};

struct EngineLoad {
  int num_running = 0;  // as of the last step
  int num_waiting = 0;  // exact: the count max_waiting bounds
  int max_waiting = 0;  // EngineOptions::max_waiting (0: unbounded)
  bool draining = false;
  cache::CacheCounters cache;
};

class Engine {
 public:
  // Starts the engine thread. INVALID_ARGUMENT for missing model/cache,
  // non-positive limits or a negative max_waiting.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options);
  virtual ~Engine() = default;  // Stops (see Stop).

  // Queues a turn. Synchronous errors (nothing queued, nothing recorded, the
  // observer not called): INVALID_ARGUMENT (empty suffix, token id >= vocab,
  // bad sampling, stop conditions beyond common/text/stop_limits.h or empty stop
  // strings, round not increasing), RESOURCE_EXHAUSTED (context >
  // max_model_len; or max_waiting turns already wait: "worker busy"), ABORTED
  // (a turn of this conversation is already queued or running, or the request
  // id is in use), UNAVAILABLE (draining or stopped). Otherwise the observer
  // gets the turn's events on the engine thread. The max_waiting check and the
  // enqueue are one atomic step: with N = max_waiting, of any number of
  // concurrent calls exactly as many succeed as there were free places.
  virtual absl::Status Submit(TurnSpec turn, std::shared_ptr<TurnObserver> observer) = 0;

  // Cancels a queued or running turn: it is discarded within one step and its
  // observer gets OnFailed(CANCELLED). No-op for unknown ids.
  virtual void Cancel(const std::string& request_id) = 0;

  // Forgets the committed state of `key` on the engine thread (within one
  // step) and then calls `done(forgotten)` there, forgotten saying whether
  // there was a state. Returns at once: it never waits for the engine thread.
  // `done` is called exactly once and must not block (like a TurnObserver);
  // if the engine has stopped, it is called at once on the calling thread
  // with false.
  virtual void Forget(const cache::ConversationKey& key,
                      absl::AnyInvocable<void(bool forgotten) &&> done) = 0;

  // Stops admitting new turns (Submit returns UNAVAILABLE); queued and running
  // turns finish.
  virtual void Drain() = 0;
  // Waits until no turn is queued or running, or the timeout passes; returns
  // whether idle.
  virtual bool AwaitIdle(absl::Duration timeout) = 0;
  // Discards every queued and running turn (OnFailed UNAVAILABLE) and joins
  // the engine thread. Idempotent.
  virtual void Stop() = 0;

  // Snapshot (num_running as of the last step, num_waiting exact); any thread.
  virtual EngineLoad Load() const = 0;
};

}  // namespace hc::engine

#endif  // HC_WORKER_ENGINE_ENGINE_H_
