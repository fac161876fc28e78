// The turn's reactor, class ChatTurn: one Complete stream as an explicit state
// machine. Its states, events and transitions are the table at the top of
// turn.cc, which also holds the transition function (Apply) and the path from
// the request to the worker (admission, lease, encoding) and the turn's end
// (Abort, Conclude). The rest, each a part of the same machine, under the same
// mutex:
//   turn_executor.cc       the serial executor (Post, Run) and the reactor's
//                          lifetime;
//   turn_worker_stream.cc  worker calls: attempts, reads, their ends, retries;
//   turn_client_stream.cc  the client stream: queued events, writes, Finish;
//   turn_commit.cc         the ledger commit and the lease heartbeat.
// Internal to router/service; StartTurn (turn.h) is the only entry point.
#ifndef HC_ROUTER_SERVICE_TURN_REACTOR_H_
#define HC_ROUTER_SERVICE_TURN_REACTOR_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/alarm.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "router/service/chat_service.h"
#include "router/service/reply_stream.h"
#include "router/service/worker_call.h"

namespace hc::router::turn_internal {

namespace v1 = hybridcache::v1;
using Deps = ChatServiceImpl::Deps;

enum class State {
  kStart,
  kAdmitting,
  kLeasing,
  kEncoding,
  kStreaming,
  kBackoff,
  kCommitting,
  kReleasing,
  kFinishing,
  kDone
};

enum class EventKind {
  kStart,
  kAdmitted,       // status, refusal
  kLeaseAcquired,  // record
  kForkSource,     // record: the fork_from source conversation
  kEncoded,        // encoded (and the turn's messages, moved back)
  kLeaseRenewed,   // status
  kCommitted,      // status
  kLeaseReleased,  // status
  kQuotaEnded,     // the tenant's concurrent-turn slot is free again
  kWorkerRead,     // call, ok
  kWorkerDone,     // call, grpc_status
  kWriteDone,      // ok
  kClientCancelled,
  kClientDone,      // the server reactor's OnDone
  kRetryAlarm,      // ok = fired
  kHeartbeatAlarm,  // ok = fired
};

struct Event {
  EventKind kind;
  bool ok = false;
  WorkerCall* call = nullptr;
  absl::Status status;
  const char* refusal = nullptr;  // kAdmitted: the quota that refused
  grpc::Status grpc_status;
  std::optional<absl::StatusOr<ConversationRecord>> record;
  std::optional<absl::StatusOr<EncodedTurn>> encoded;
  std::vector<TurnMessage> messages;
};

using Action = absl::AnyInvocable<void() &&>;

// Events of one turn waiting for the client before the turn stops reading
// from its worker (a slow client slows its worker stream, not the router's
// memory).
inline constexpr size_t kMaxQueuedEvents = 16;

class ChatTurn final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                       public WorkerCall::Listener {
 public:
  ChatTurn(Deps* deps, grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* raw,
           absl::StatusOr<Caller> caller);

  // Reactions: each posts one event.
  void OnWriteDone(bool ok) override { Post(Event{.kind = EventKind::kWriteDone, .ok = ok}); }
  void OnCancel() override { Post(Event{EventKind::kClientCancelled}); }
  void OnDone() override { Post(Event{EventKind::kClientDone}); }
  void OnWorkerRead(WorkerCall* call, bool ok) override {
    Post(Event{.kind = EventKind::kWorkerRead, .ok = ok, .call = call});
  }
  void OnWorkerDone(WorkerCall* call, const grpc::Status& status) override {
    Post(Event{.kind = EventKind::kWorkerDone, .call = call, .grpc_status = status});
  }

 private:
  ~ChatTurn() override;

  // ---- The serial executor (turn_executor.cc) ---------------------------

  void Post(Event event);
  void Run();

  // ---- The transition function and the way to the worker (turn.cc) ------

  void Apply(Event& e, std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnStart(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnAdmitted(const absl::Status& status, const char* refusal, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartLeasing(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnLeaseAcquired(absl::StatusOr<ConversationRecord> rec, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // With the lease (and a fork's history) in hand: round and context checks,
  // then tokenizing.
  void OnLeased(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // fork_from: the source conversation read; its first messages become this
  // turn's history.
  void OnForkSource(absl::StatusOr<ConversationRecord> source, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static std::vector<TurnMessage> ParseMessages(const v1::CompleteRequest& req);
  uint64_t MessageBytes() const;
  void OnEncoded(absl::StatusOr<EncodedTurn> enc, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // RESOURCE_EXHAUSTED when `history` + `suffix` tokens reach the context
  // limit; `exact` false when `suffix` is only a lower bound.
  absl::Status CheckContext(uint64_t history, uint64_t suffix, bool exact) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The fewest tokens the request's new text can make: raw tokens exactly;
  // messages at least their bytes over the codec's longest token.
  uint64_t MinSuffixTokens() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // ---- Worker calls (turn_worker_stream.cc) ------------------------------

  void StartAttempt(bool resend_history, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnWorkerReadEvent(WorkerCall* call, bool ok, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleWorkerEvent(const v1::ExecuteEvent& ev, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnWorkerDoneEvent(WorkerCall* call, const grpc::Status& status, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Reads the next worker event while fewer than kMaxQueuedEvents wait for
  // the client (backpressure that still lets reading from the worker overlap
  // writing to the client); after the commit report, reads on to the end of
  // the stream.
  void MaybeRead(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Stops a call: cancels it (only while its hold is held, so the call is
  // alive), and lets it end at once unless a read is in flight (whose end then
  // releases it).
  void StopCall(WorkerCall* call, std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseCall(WorkerCall* call, std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleRetry(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // ---- Client stream (turn_client_stream.cc) -----------------------------

  void OnWriteDoneEvent(bool ok, std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Enqueue(v1::CompleteEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Runs after every event: starts the next client write when none is in
  // flight, or finishes the stream once the turn is decided and the client
  // has every event. Chunks queued behind a slow write leave as one message
  // (token ids, text and logprobs concatenated, so the stream's content is
  // unchanged): fewer writes, each a syscall and a thread wake-up. The last
  // event of a successful turn goes out with the status in one operation.
  void Pump(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendChunk(const ReplyStream::Chunk& c, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendStarted(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint32_t PromptTokens() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // ---- Commit and lease heartbeat (turn_commit.cc) -----------------------

  void StartCommit(const v1::CommitReport& report, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnCommitted(const absl::Status& status, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The finished turn's usage (once StartCommit has the worker's report): what
  // the ledger commits with the round and TurnCompleted reports.
  RoundUsage TurnUsage() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ArmHeartbeat(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnLeaseRenewed(const absl::Status& status, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // ---- Abort, finish (turn.cc) --------------------------------------------

  // The turn must end with `status` (the client left, the lease was lost):
  // a running worker call is cancelled first and the turn fails once it has
  // ended; otherwise it fails now. A commit in flight stands.
  void Abort(const grpc::Status& status, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Decides the final status (once): stops a failed turn's worker call, gives
  // the lease back unless committed or lost, then finishes once the client
  // has every queued event.
  void Conclude(const grpc::Status& status, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A lease release or quota end answered; the last one lets the turn finish.
  void OnReleased(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BeginFinish(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Deps* const deps_;
  grpc::CallbackServerContext* const ctx_;
  // The request, parsed in the constructor and read-only afterwards (the
  // tokenizer reads it on the work pool).
  v1::CompleteRequest request_;
  absl::Status parsed_;
  const v1::CompleteRequest* const req_;
  // The authenticated caller (router/tenancy/api_keys.h), or why not.
  const absl::StatusOr<Caller> caller_;
  const absl::Time start_;
  // The client is in this process (gRPC's in-process transport), as its
  // kInProcessClientMetadata says. Only changes how the last event is sent.
  const bool in_process_;

  absl::Mutex mu_;
  // The executor: events not yet applied, and whether a thread is applying.
  std::deque<Event> events_ ABSL_GUARDED_BY(mu_);
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  // Event sources still to deliver their last event: worker calls (OnDone),
  // ledger operations, alarms. The client stream is client_done_.
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool client_done_ ABSL_GUARDED_BY(mu_) = false;

  State state_ ABSL_GUARDED_BY(mu_) = State::kStart;
  std::optional<grpc::Status> abort_ ABSL_GUARDED_BY(mu_);  // why the turn must stop
  std::optional<grpc::Status> final_ ABSL_GUARDED_BY(mu_);  // decided final status
  bool counted_ ABSL_GUARDED_BY(mu_) = false;               // in deps_->active_turns
  int releasing_ ABSL_GUARDED_BY(mu_) = 0;                  // lease release / quota end in flight
  bool admitted_ ABSL_GUARDED_BY(mu_) = false;              // holds a tenant quota slot
  const char* refusal_ ABSL_GUARDED_BY(mu_) = nullptr;      // metrics reason of a refusal

  LedgerKey key_ ABSL_GUARDED_BY(mu_);
  std::string holder_ ABSL_GUARDED_BY(mu_);
  bool leased_ ABSL_GUARDED_BY(mu_) = false;
  ConversationRecord rec_ ABSL_GUARDED_BY(mu_);
  // A fork: rec_ holds the copied history, which the commit appends too (the
  // ledger's record of this conversation is still empty).
  bool forked_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<TurnMessage> messages_ ABSL_GUARDED_BY(mu_);
  // Read by the tokenizer on the work pool (hence atomic, not under mu_).
  std::atomic<bool> cancel_encoding_{false};
  EncodedTurn suffix_ ABSL_GUARDED_BY(mu_);
  // A rewrite turn (router/service/rewrite.h): the committed tokens it keeps;
  // rec_ then holds only those.
  std::optional<uint32_t> rewrite_from_ ABSL_GUARDED_BY(mu_);
  std::optional<ReplyStream> reply_ ABSL_GUARDED_BY(mu_);

  std::shared_ptr<Worker> worker_ ABSL_GUARDED_BY(mu_);
  RouteKind kind_ ABSL_GUARDED_BY(mu_) = RouteKind::kPlaced;
  // Every call of this turn, freed with it (an earlier attempt may still be
  // ending); call_ is the current one.
  std::vector<std::unique_ptr<WorkerCall>> calls_ ABSL_GUARDED_BY(mu_);
  WorkerCall* call_ ABSL_GUARDED_BY(mu_) = nullptr;
  int attempts_ ABSL_GUARDED_BY(mu_) = 0;
  bool history_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool state_missing_ ABSL_GUARDED_BY(mu_) = false;
  v1::ExecuteStarted started_ ABSL_GUARDED_BY(mu_);
  bool have_started_ ABSL_GUARDED_BY(mu_) = false;
  bool started_sent_ ABSL_GUARDED_BY(mu_) = false;
  v1::CommitReport report_ ABSL_GUARDED_BY(mu_);

  // Alarms live as long as the turn (one may still be delivering its event).
  std::vector<std::unique_ptr<grpc::Alarm>> alarms_ ABSL_GUARDED_BY(mu_);
  grpc::Alarm* retry_alarm_ ABSL_GUARDED_BY(mu_) = nullptr;
  grpc::Alarm* heartbeat_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool heartbeat_armed_ ABSL_GUARDED_BY(mu_) = false;

  // Events for the client; the front one is being written.
  std::deque<v1::CompleteEvent> queue_ ABSL_GUARDED_BY(mu_);  // not yet written
  grpc::ByteBuffer write_buf_ ABSL_GUARDED_BY(mu_);           // the write in flight
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace hc::router::turn_internal

#endif  // HC_ROUTER_SERVICE_TURN_REACTOR_H_
