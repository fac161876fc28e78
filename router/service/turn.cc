// The turn: one Complete stream, as an explicit state machine.
//
// Every reaction (gRPC server and client reactors, ledger callbacks, alarms)
// only posts an Event. Events are applied one at a time by whichever thread
// finds the turn idle (a serial executor without a thread of its own): the
// transition function Apply() runs under mu_ and decides the next state and a
// list of actions (gRPC operations, ledger calls, alarms), which the same
// thread then runs outside mu_ before it takes the next event. So decisions
// and the gRPC operations that follow them happen in order, never
// concurrently, and a reaction that fires inline while an action runs is only
// queued. The turn deletes itself once the client stream, every worker call,
// every ledger operation and every alarm has delivered its last event.
//
// States and transitions (events not listed for a state are bookkeeping only):
//
//   state        event                            next
//   ------------ -------------------------------- ---------------------------
//   kStart       start: no/unknown API key        kFinishing (UNAUTHENTICATED)
//                start: request invalid           kFinishing (INVALID_ARGUMENT)
//                start: salt not the key's        kFinishing (PERMISSION_DENIED)
//                start: router at its bound, or
//                  the new text alone is too long kFinishing (RESOURCE_EXHAUSTED)
//                start, tenant with quotas        kAdmitting: TenantQuotas::AdmitTurn
//                start                            kLeasing: AcquireLease
//   kAdmitting   refused (quota) / error          kFinishing (that status)
//                admitted                         kLeasing: AcquireLease
//   kLeasing     lease refused / ledger error     kFinishing (that status)
//                lease held: bad round, context
//                  surely too long                kReleasing (that status)
//                lease held, messages             kEncoding: tokenize on the work
//                                                 pool; heartbeat armed
//                lease held, raw tokens           as for "encoded" below
//   kEncoding    encoded: error, context too long,
//                  no worker                      kReleasing (that status)
//                encoded                          kStreaming: Execute on the
//                                                 routed worker
//                client cancelled / lease lost    kEncoding, tokenizer cancelled;
//                                                 then kReleasing
//   kStreaming   worker tokens                    kStreaming: chunk to the client
//                                                 (text that may still be a stop
//                                                 string held back)
//                                                 (next worker read once the
//                                                 client took it: backpressure)
//                worker committed                 kCommitting: ledger Commit
//                worker call over, state missing  kStreaming: resend with history
//                worker call over, UNAVAILABLE /
//                  ABORTED / RESOURCE_EXHAUSTED
//                  before the first token         kBackoff: retry alarm
//                worker call over otherwise       kReleasing (its status)
//                client cancelled / lease lost    kStreaming, call cancelled;
//                                                 then kReleasing on its end
//   kBackoff     retry alarm                      kStreaming: Execute again
//                client cancelled / lease lost    kReleasing
//   kCommitting  commit OK                        kReleasing (OK): TurnCompleted
//                                                 queued; quota slot given back
//                commit refused                   kReleasing (its status)
//   kReleasing   lease released and quota slot    kFinishing (a state without
//                  given back (those it held)     either skips kReleasing)
//   kFinishing   client took every queued event   Finish(status) -> kDone
//
// The lease is renewed every lease_ttl / 3 while the turn holds it (kStreaming,
// kBackoff), so a turn of any length keeps its conversation; a renewal that
// finds the lease taken over aborts the turn with ABORTED. An admitted turn's
// quota slot is renewed with it and given back when the turn concludes; a
// committed turn's tokens are charged to its tenant.
#include "router/service/turn.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/raw_proto.h"
#include "common/retry_delay.h"
#include "common/tsan_annotations.h"
#include "grpcpp/alarm.h"
#include "router/service/reply_stream.h"
#include "router/service/turn_requests.h"
#include "router/service/validation.h"
#include "router/service/worker_call.h"

namespace hc::router {
namespace {

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

// Messages up to this many bytes are tokenized inline (microseconds); longer
// ones on the work pool.
constexpr uint64_t kInlineEncodeBytes = 16 << 10;

// Events of one turn waiting for the client before the turn stops reading
// from its worker (a slow client slows its worker stream, not the router's
// memory).
constexpr size_t kMaxQueuedEvents = 16;

// Tenant refusal reasons (metrics) besides the quotas' (QuotaRefusalName).
constexpr char kRefusedUnauthenticated[] = "unauthenticated";
constexpr char kRefusedPermission[] = "permission_denied";
constexpr char kRefusedConversations[] = "conversations";

class ChatTurn final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                       public WorkerCall::Listener {
 public:
  ChatTurn(Deps* deps, grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* raw,
           absl::StatusOr<Caller> caller)
      : deps_(deps), ctx_(ctx), req_(&request_), caller_(std::move(caller)), start_(absl::Now()) {
    parsed_ = ParseRawRequest(*raw, &request_);
    {
      absl::MutexLock lock(&deps_->live_mu);
      ++deps_->live_calls;
    }
    Post(Event{EventKind::kStart});
  }

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
  ~ChatTurn() override {
    absl::MutexLock lock(&deps_->live_mu);
    --deps_->live_calls;
  }

  // ---- The serial executor ----------------------------------------------

  void Post(Event event) {
    // Every reaction posts; its operation was started by an action (Run),
    // after the turn was constructed. gRPC orders the two, invisibly to TSan.
    HC_TSAN_ACQUIRE(this);
    {
      absl::MutexLock lock(&mu_);
      events_.push_back(std::move(event));
      if (running_) return;  // the running thread takes it
      running_ = true;
    }
    Run();
  }

  void Run() {
    while (true) {
      std::vector<Action> actions;
      bool finished = false;
      {
        absl::MutexLock lock(&mu_);
        if (events_.empty()) {
          running_ = false;
          // Nothing can post any more once every source has ended.
          finished = client_done_ && pending_ == 0;
          if (!finished) return;
        } else {
          Event e = std::move(events_.front());
          events_.pop_front();
          Apply(e, actions);
          Pump(actions);
        }
      }
      if (finished) {
        delete this;
        return;
      }
      HC_TSAN_RELEASE(this);  // see Post
      for (Action& a : actions) std::move(a)();
    }
  }

  // ---- The transition function ------------------------------------------

  void Apply(Event& e, std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    switch (e.kind) {
      case EventKind::kStart:
        return OnStart(out);
      case EventKind::kAdmitted:
        --pending_;
        return OnAdmitted(e.status, e.refusal, out);
      case EventKind::kLeaseAcquired:
        --pending_;
        return OnLeaseAcquired(std::move(*e.record), out);
      case EventKind::kEncoded:
        --pending_;
        messages_ = std::move(e.messages);
        return OnEncoded(std::move(*e.encoded), out);
      case EventKind::kLeaseRenewed:
        --pending_;
        return OnLeaseRenewed(e.status, out);
      case EventKind::kCommitted:
        --pending_;
        return OnCommitted(e.status, out);
      case EventKind::kLeaseReleased:
        --pending_;
        if (!e.status.ok()) {
          // It expires by itself; the turn's outcome stands.
          HC_LOG(WARNING) << "turn " << holder_ << ": cannot release the lease: " << e.status;
        }
        leased_ = false;
        return OnReleased(out);
      case EventKind::kQuotaEnded:
        --pending_;
        return OnReleased(out);
      case EventKind::kWorkerRead:
        return OnWorkerReadEvent(e.call, e.ok, out);
      case EventKind::kWorkerDone:
        --pending_;
        return OnWorkerDoneEvent(e.call, e.grpc_status, out);
      case EventKind::kWriteDone:
        return OnWriteDoneEvent(e.ok, out);
      case EventKind::kClientCancelled:
        return Abort(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"), out);
      case EventKind::kClientDone:
        client_done_ = true;
        return;
      case EventKind::kRetryAlarm:
        --pending_;
        if (state_ == State::kBackoff) StartAttempt(/*resend_history=*/false, out);
        return;
      case EventKind::kHeartbeatAlarm:
        --pending_;
        heartbeat_armed_ = false;
        if (e.ok && leased_ &&
            (state_ == State::kEncoding || state_ == State::kStreaming ||
             state_ == State::kBackoff)) {
          ++pending_;
          out.push_back([this, key = key_, holder = holder_, admitted = admitted_] {
            if (admitted)
              deps_->options.quotas->RenewTurn(key.tenant, holder, deps_->options.lease_ttl);
            deps_->ledger->RenewLease(
                key, holder, deps_->options.lease_ttl, [this](absl::Status s) {
                  Post(Event{.kind = EventKind::kLeaseRenewed, .status = std::move(s)});
                });
          });
        }
        return;
    }
  }

  void OnStart(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!caller_.ok()) {
      refusal_ = kRefusedUnauthenticated;
      return Conclude(ToGrpcStatus(caller_.status()), out);
    }
    if (!parsed_.ok()) return Conclude(ToGrpcStatus(parsed_), out);
    if (absl::Status s = ValidateCompleteRequest(*req_, deps_->codec->vocab_size()); !s.ok()) {
      return Conclude(ToGrpcStatus(s), out);
    }
    if (absl::Status s = CheckSalt(*caller_, req_->cache_salt()); !s.ok()) {
      refusal_ = kRefusedPermission;
      return Conclude(ToGrpcStatus(s), out);
    }
    const int64_t max_turns = deps_->options.max_inflight_turns;
    if (deps_->active_turns.fetch_add(1) >= max_turns && max_turns > 0) {
      deps_->active_turns.fetch_sub(1);
      return Conclude(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                   absl::StrCat("router busy: ", max_turns,
                                                " turns in flight (--max_inflight_turns)")),
                      out);
    }
    counted_ = true;
    if (absl::Status s = CheckContext(/*history=*/0, MinSuffixTokens(), /*exact=*/false); !s.ok()) {
      return Conclude(ToGrpcStatus(s), out);
    }
    key_ = LedgerKey{req_->cache_salt(), req_->conversation_id(), caller_->tenant};
    holder_ = absl::StrCat(deps_->options.router_id, "/", deps_->next_turn.fetch_add(1));
    if (deps_->options.quotas != nullptr && !key_.tenant.empty()) {
      state_ = State::kAdmitting;
      ++pending_;
      out.push_back([this, tenant = key_.tenant, holder = holder_, limits = caller_->limits] {
        deps_->options.quotas->AdmitTurn(
            tenant, holder, limits, deps_->options.lease_ttl, [this](Admission a) {
              Post(Event{.kind = EventKind::kAdmitted,
                         .status = std::move(a.status),
                         .refusal = a.refusal == QuotaRefusal::kNone
                                        ? nullptr
                                        : QuotaRefusalName(a.refusal)});
            });
      });
      return;
    }
    StartLeasing(out);
  }

  void OnAdmitted(const absl::Status& status, const char* refusal, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!status.ok()) {
      refusal_ = refusal;
      return Conclude(ToGrpcStatus(status), out);
    }
    admitted_ = true;
    if (abort_.has_value()) return Conclude(*abort_, out);  // the client left meanwhile
    StartLeasing(out);
  }

  void StartLeasing(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    state_ = State::kLeasing;
    ++pending_;
    out.push_back([this, key = key_, holder = holder_] {
      deps_->ledger->AcquireLease(
          key, holder, deps_->options.lease_ttl, [this](absl::StatusOr<ConversationRecord> r) {
            Post(Event{.kind = EventKind::kLeaseAcquired, .record = std::move(r)});
          });
    });
  }

  void OnLeaseAcquired(absl::StatusOr<ConversationRecord> rec, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!rec.ok()) {
      // The per-salt cap carries no retry delay; the tenant's cap does.
      if (absl::IsResourceExhausted(rec.status()) && RetryDelayOf(rec.status()).has_value()) {
        refusal_ = kRefusedConversations;
      }
      return Conclude(ToGrpcStatus(rec.status()), out);
    }
    rec_ = *std::move(rec);
    leased_ = true;
    if (abort_.has_value()) return Conclude(*abort_, out);  // the client left meanwhile
    if (req_->has_expected_round() && req_->expected_round() != rec_.round) {
      return Conclude(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                   absl::StrCat("expected round ", req_->expected_round(),
                                                " but the committed round is ", rec_.round)),
                      out);
    }
    // Refuse before tokenizing when even the fewest tokens the text could
    // make do not fit.
    if (absl::Status s = CheckContext(rec_.tokens.size(), MinSuffixTokens(), /*exact=*/false);
        !s.ok()) {
      return Conclude(ToGrpcStatus(s), out);
    }
    ArmHeartbeat(out);
    if (req_->messages_size() == 0) {
      EncodedTurn raw;
      raw.tokens.assign(req_->suffix_token_ids().begin(), req_->suffix_token_ids().end());
      return OnEncoded(std::move(raw), out);
    }
    TurnContext tc;
    tc.first_turn = rec_.tokens.empty();
    if (!rec_.tokens.empty()) tc.last_token = rec_.tokens.back();
    // Tokenizing is CPU work proportional to the text. A short text (tens of
    // microseconds) is encoded right here; a longer one on the work pool,
    // never on a gRPC or ledger thread, stopping early on a cancel.
    if (MessageBytes() <= kInlineEncodeBytes) {
      messages_ = ParseMessages(*req_);
      return OnEncoded(deps_->codec->EncodeTurn(messages_, tc), out);
    }
    state_ = State::kEncoding;
    ++pending_;
    out.push_back([this, tc] {
      deps_->work_pool->Schedule([this, tc] {
        std::vector<TurnMessage> messages = ParseMessages(*req_);
        absl::StatusOr<EncodedTurn> enc = deps_->codec->EncodeTurn(messages, tc, &cancel_encoding_);
        Post(Event{.kind = EventKind::kEncoded,
                   .encoded = std::move(enc),
                   .messages = std::move(messages)});
      });
    });
  }

  static std::vector<TurnMessage> ParseMessages(const v1::CompleteRequest& req) {
    std::vector<TurnMessage> messages;
    messages.reserve(req.messages_size());
    for (const auto& m : req.messages()) {
      TurnMessage t;
      ParseRole(m.role(), &t.role);  // validated in OnStart
      t.content = m.content();
      messages.push_back(std::move(t));
    }
    return messages;
  }

  uint64_t MessageBytes() const {
    uint64_t bytes = 0;
    for (const auto& m : req_->messages()) bytes += m.content().size();
    return bytes;
  }

  void OnEncoded(absl::StatusOr<EncodedTurn> enc, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (abort_.has_value()) return Conclude(*abort_, out);  // cancelled meanwhile
    if (!enc.ok()) return Conclude(ToGrpcStatus(enc.status()), out);
    suffix_ = *std::move(enc);
    if (absl::Status s = CheckContext(rec_.tokens.size(), suffix_.tokens.size(), /*exact=*/true);
        !s.ok()) {
      return Conclude(ToGrpcStatus(s), out);
    }
    const auto& stops = req_->sampling().stop();
    reply_.emplace(deps_->codec, std::vector<std::string>(stops.begin(), stops.end()));
    StartAttempt(/*resend_history=*/false, out);
  }

  // RESOURCE_EXHAUSTED when `history` + `suffix` tokens reach the context
  // limit; `exact` false when `suffix` is only a lower bound.
  absl::Status CheckContext(uint64_t history, uint64_t suffix, bool exact) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const uint64_t context = history + suffix;
    const uint32_t max_len = deps_->options.max_model_len > 0 ? deps_->options.max_model_len
                                                              : deps_->pool->max_model_len();
    if (max_len > 0 && context >= max_len) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the conversation would have ", exact ? "" : "at least ", context,
                       " tokens of context; the model allows fewer than ", max_len));
    }
    return absl::OkStatus();
  }

  // The fewest tokens the request's new text can make: raw tokens exactly;
  // messages at least their bytes over the codec's longest token.
  uint64_t MinSuffixTokens() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (req_->messages_size() == 0) return static_cast<uint64_t>(req_->suffix_token_ids_size());
    return MessageBytes() / std::max<size_t>(1, deps_->codec->max_token_bytes());
  }

  void StartAttempt(bool resend_history, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++attempts_;
    if (!resend_history) {
      absl::StatusOr<RouteDecision> route = deps_->pool->Route(rec_.worker.worker_id);
      if (!route.ok()) return Conclude(ToGrpcStatus(route.status()), out);
      worker_ = route->worker;
      kind_ = route->kind;
      deps_->metrics->RoutingDecision(kind_);
    }
    if (worker_->stub() == nullptr) {
      return Conclude(grpc::Status(grpc::StatusCode::INTERNAL, "worker without a channel"), out);
    }
    // A worker state of 0 tokens (a turn cut by a multi-token stop string
    // that started from nothing) is no state: send the history.
    const bool sticky = !resend_history && kind_ == RouteKind::kSticky &&
                        rec_.worker.num_tokens > 0 && rec_.worker.num_tokens <= rec_.tokens.size();
    v1::ExecuteRequest req =
        BuildExecuteRequest({.key = &key_,
                             .record = &rec_,
                             .suffix = &suffix_,
                             .request_id = absl::StrCat(holder_, "#", attempts_),
                             .sticky = sticky});
    *req.mutable_sampling() = req_->sampling();
    history_sent_ = !sticky;
    state_missing_ = false;
    worker_->AddInflight(1);
    calls_.push_back(std::make_unique<WorkerCall>(this, worker_, std::move(req), ctx_->deadline()));
    call_ = calls_.back().get();
    ++pending_;
    call_->reading = true;  // Start() issues the first read
    state_ = State::kStreaming;
    out.push_back([call = call_] { call->Start(); });
  }

  // ---- Worker events ------------------------------------------------------

  void OnWorkerReadEvent(WorkerCall* call, bool ok, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    call->reading = false;
    if (ok && !call->stopping && call == call_) {
      HandleWorkerEvent(call->event(), out);
      MaybeRead(out);
      return;
    }
    // The end of the stream, or an event nobody wants any more: no more
    // reads, so let the call end.
    call->stopping = true;
    ReleaseCall(call, out);
  }

  void HandleWorkerEvent(const v1::ExecuteEvent& ev, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (state_ != State::kStreaming || abort_.has_value()) return;
    switch (ev.event_case()) {
      case v1::ExecuteEvent::kStarted:
        started_ = ev.started();
        have_started_ = true;
        break;
      case v1::ExecuteEvent::kTokens: {
        SendStarted(out);
        const auto& ids = ev.tokens().token_ids();
        const auto& logprobs = ev.tokens().logprobs();
        // Only what cannot be part of a stop string goes out now.
        SendChunk(reply_->Push(std::span<const uint32_t>(ids.data(), ids.size()),
                               std::span<const float>(logprobs.data(), logprobs.size())),
                  out);
        break;
      }
      case v1::ExecuteEvent::kCommitted:
        return StartCommit(ev.committed(), out);
      case v1::ExecuteEvent::kStateMissing:
        state_missing_ = true;
        HC_LOG(INFO) << "turn " << holder_ << ": worker " << worker_->id() << " lost the state ("
                     << ev.state_missing().reason() << "), resending history";
        break;
      default:
        break;
    }
  }

  void OnWorkerDoneEvent(WorkerCall* call, const grpc::Status& status, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    call->done = true;
    call->worker().AddInflight(-1);
    if (call != call_) return;  // an earlier attempt
    call_ = nullptr;
    if (state_ != State::kStreaming) return;  // already decided (committing, failing)
    if (abort_.has_value()) return Conclude(*abort_, out);
    const bool may_retry = !started_sent_ && attempts_ < deps_->options.max_attempts;
    if (state_missing_ && status.ok()) {
      if (history_sent_) {
        return Conclude(grpc::Status(grpc::StatusCode::INTERNAL,
                                     "worker reported state missing although the history was sent"),
                        out);
      }
      return StartAttempt(/*resend_history=*/true, out);
    }
    switch (status.error_code()) {
      case grpc::StatusCode::UNAVAILABLE:
        // A connection-level failure of a real call: the pool stops routing
        // there until a probe succeeds.
        deps_->pool->MarkUnhealthy(call->worker().id());
        if (may_retry) {
          HC_LOG(WARNING) << "turn " << holder_ << ": worker " << call->worker().id()
                          << " unavailable (" << status.error_message() << "), retrying";
          return ScheduleRetry(out);
        }
        break;
      case grpc::StatusCode::ABORTED:
        // This router holds the conversation's lease, so a worker-side ABORTED
        // is a turn it has not finished discarding yet (a cancel on its way).
      case grpc::StatusCode::RESOURCE_EXHAUSTED:
        // The worker's waiting queue is full: the next placement may differ.
        if (may_retry) {
          HC_LOG(INFO) << "turn " << holder_ << ": worker " << call->worker().id() << " answered "
                       << status.error_message() << ", retrying";
          return ScheduleRetry(out);
        }
        break;
      default:
        break;
    }
    if (status.ok()) {
      return Conclude(
          grpc::Status(grpc::StatusCode::INTERNAL, "worker ended the turn without committing"),
          out);
    }
    Conclude(status, out);
  }

  // Reads the next worker event while fewer than kMaxQueuedEvents wait for
  // the client (backpressure that still lets reading from the worker overlap
  // writing to the client); after the commit report, reads on to the end of
  // the stream.
  void MaybeRead(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    WorkerCall* call = call_;
    if (call == nullptr || call->reading || call->stopping || call->released) return;
    if (state_ == State::kStreaming && queue_.size() >= kMaxQueuedEvents) return;
    call->reading = true;
    out.push_back([call] { call->Read(); });
  }

  // Stops a call: cancels it (only while its hold is held, so the call is
  // alive), and lets it end at once unless a read is in flight (whose end then
  // releases it).
  void StopCall(WorkerCall* call, std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (call == nullptr || call->released) return;
    call->stopping = true;
    out.push_back([call] { call->Cancel(); });
    ReleaseCall(call, out);
  }

  void ReleaseCall(WorkerCall* call, std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (call->reading || call->released) return;
    call->released = true;
    out.push_back([call] { call->Release(); });
  }

  // ---- Client stream ------------------------------------------------------

  void OnWriteDoneEvent(bool ok, std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = false;
    if (!ok) {
      // The client is gone: nothing more reaches it.
      queue_.clear();
      Abort(grpc::Status(grpc::StatusCode::CANCELLED, "client stream closed"), out);
    }
    // Pump (after every event) writes what is queued, or finishes.
  }

  void Enqueue(v1::CompleteEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    queue_.push_back(std::move(event));
  }

  // Runs after every event: starts the next client write when none is in
  // flight, or finishes the stream once the turn is decided and the client
  // has every event. Chunks queued behind a slow write leave as one message
  // (token ids, text and logprobs concatenated, so the stream's content is
  // unchanged): fewer writes, each a syscall and a thread wake-up. The last
  // event of a successful turn goes out with the status in one operation.
  void Pump(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || state_ == State::kDone) return;
    if (queue_.empty()) {
      if (state_ == State::kFinishing) {
        state_ = State::kDone;
        out.push_back([this, status = *final_] { Finish(status); });
      }
      return;
    }
    write_buf_ = SerializeRawResponse(PopNextWrite(queue_));
    writing_ = true;
    if (state_ == State::kFinishing && queue_.empty() && final_->ok()) {
      state_ = State::kDone;
      out.push_back(
          [this] { StartWriteAndFinish(&write_buf_, grpc::WriteOptions(), grpc::Status::OK); });
      return;
    }
    out.push_back([this] { StartWrite(&write_buf_); });
    MaybeRead(out);  // the queue shrank: below its bound again
  }

  void SendChunk(const ReplyStream::Chunk& c, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (c.empty()) return;
    v1::CompleteEvent e;
    auto* chunk = e.mutable_chunk();
    chunk->mutable_token_ids()->Add(c.token_ids.begin(), c.token_ids.end());
    chunk->set_text(c.text);
    chunk->mutable_logprobs()->Add(c.logprobs.begin(), c.logprobs.end());
    Enqueue(std::move(e));
  }

  void SendStarted(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (started_sent_) return;
    started_sent_ = true;
    v1::CompleteEvent e;
    auto* s = e.mutable_started();
    s->set_round(rec_.round + 1);
    // Worker addresses are for admins (chat.proto).
    s->set_worker_id(caller_->admin ? worker_->id() : std::string());
    s->set_prompt_tokens(PromptTokens());
    s->set_cached_tokens(started_.cached_tokens());
    Enqueue(std::move(e));
    deps_->metrics->TimeToFirstToken(absl::ToDoubleSeconds(absl::Now() - start_));
  }

  uint32_t PromptTokens() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return have_started_ ? started_.prompt_tokens()
                         : static_cast<uint32_t>(rec_.tokens.size() + suffix_.tokens.size());
  }

  // ---- Commit ---------------------------------------------------------------

  void StartCommit(const v1::CommitReport& report, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    SendStarted(out);
    // The rest of the reply; with a stop string, only the text before it
    // (its cut token re-tokenized), and that is what the ledger records.
    absl::StatusOr<ReplyStream::Chunk> rest = reply_->Finish(report);
    if (!rest.ok()) {
      HC_LOG(ERROR) << "turn " << holder_ << ": " << rest.status();
      return Conclude(ToGrpcStatus(rest.status()), out);
    }
    SendChunk(*rest, out);
    CommitRequest c =
        BuildCommitRequest(*deps_->codec, rec_, messages_, suffix_, reply_->reply_tokens(),
                           WorkerState{worker_->id(), report.state().round(),
                                       report.state().num_tokens(), report.state().prefix_hash()});
    report_ = report;
    state_ = State::kCommitting;
    ++pending_;
    out.push_back([this, key = key_, holder = holder_, c = std::move(c)]() mutable {
      deps_->ledger->Commit(key, holder, std::move(c), [this](absl::Status s) {
        Post(Event{.kind = EventKind::kCommitted, .status = std::move(s)});
      });
    });
  }

  void OnCommitted(const absl::Status& status, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!status.ok()) {
      HC_LOG(WARNING) << "turn " << holder_ << ": ledger commit failed: " << status;
      // ABORTED: the lease is someone else's now; otherwise it is still ours.
      if (status.code() == absl::StatusCode::kAborted) leased_ = false;
      return Conclude(ToGrpcStatus(status), out);
    }
    leased_ = false;  // a commit releases the lease
    v1::CompleteEvent e;
    auto* done = e.mutable_completed();
    done->set_finish_reason(report_.finish_reason());
    done->set_committed_round(rec_.round + 1);
    done->mutable_usage()->set_prompt_tokens(PromptTokens());
    done->mutable_usage()->set_cached_tokens(started_.cached_tokens());
    done->mutable_usage()->set_completion_tokens(
        report_.completion_tokens() > 0 ? report_.completion_tokens()
                                        : static_cast<uint32_t>(reply_->num_generated()));
    Enqueue(std::move(e));
    const uint64_t prompt = done->usage().prompt_tokens();
    const uint64_t completion = done->usage().completion_tokens();
    deps_->metrics->TenantTurn(key_.tenant, prompt, completion);
    if (admitted_) {
      out.push_back(
          [this, tenant = key_.tenant, tokens = prompt + completion, limits = caller_->limits] {
            deps_->options.quotas->ChargeTokens(tenant, tokens, limits);
          });
    }
    Conclude(grpc::Status::OK, out);
  }

  // ---- Lease heartbeat ------------------------------------------------------

  void ArmHeartbeat(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (heartbeat_armed_) return;
    heartbeat_armed_ = true;
    ++pending_;
    alarms_.push_back(std::make_unique<grpc::Alarm>());
    heartbeat_ = alarms_.back().get();
    const absl::Time when = absl::Now() + deps_->options.lease_ttl / 3;
    out.push_back([this, alarm = heartbeat_, when] {
      alarm->Set(absl::ToChronoTime(when), [this](bool fired) {
        Post(Event{.kind = EventKind::kHeartbeatAlarm, .ok = fired});
      });
    });
  }

  void OnLeaseRenewed(const absl::Status& status, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!leased_ || (state_ != State::kStreaming && state_ != State::kBackoff)) return;
    if (status.code() == absl::StatusCode::kAborted) {
      HC_LOG(WARNING) << "turn " << holder_ << ": lost the lease: " << status;
      leased_ = false;
      return Abort(grpc::Status(grpc::StatusCode::ABORTED,
                                "the conversation's lease was taken over by another turn"),
                   out);
    }
    if (!status.ok()) {
      // The lease lasts three renewal intervals: try again at the next one.
      HC_LOG(WARNING) << "turn " << holder_ << ": cannot renew the lease: " << status;
    }
    ArmHeartbeat(out);
  }

  // ---- Retry, abort, finish -------------------------------------------------

  void ScheduleRetry(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    state_ = State::kBackoff;
    const absl::Duration backoff = deps_->options.retry_backoff * (1 << (attempts_ - 1));
    ++pending_;
    alarms_.push_back(std::make_unique<grpc::Alarm>());
    retry_alarm_ = alarms_.back().get();
    const absl::Time when = absl::Now() + backoff;
    out.push_back([this, alarm = retry_alarm_, when] {
      alarm->Set(absl::ToChronoTime(when),
                 [this](bool fired) { Post(Event{.kind = EventKind::kRetryAlarm, .ok = fired}); });
    });
  }

  // The turn must end with `status` (the client left, the lease was lost):
  // a running worker call is cancelled first and the turn fails once it has
  // ended; otherwise it fails now. A commit in flight stands.
  void Abort(const grpc::Status& status, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (abort_.has_value()) return;
    abort_ = status;
    switch (state_) {
      case State::kStreaming:
        return StopCall(call_, out);  // its end fails the turn
      case State::kBackoff:
        out.push_back([alarm = retry_alarm_] { alarm->Cancel(); });
        return Conclude(status, out);
      case State::kEncoding:
        cancel_encoding_.store(true);  // fails once the tokenizer has stopped
        return;
      default:
        return;  // kAdmitting, kLeasing: fail on their answer; later states decided
    }
  }

  // Decides the final status (once): stops a failed turn's worker call, gives
  // the lease back unless committed or lost, then finishes once the client
  // has every queued event.
  void Conclude(const grpc::Status& status, std::vector<Action>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (final_.has_value()) return;
    final_ = status;
    deps_->metrics->Request(static_cast<absl::StatusCode>(status.error_code()),
                            absl::ToDoubleSeconds(absl::Now() - start_));
    if (counted_) {
      deps_->active_turns.fetch_sub(1);
      counted_ = false;
    }
    if (refusal_ != nullptr) {
      deps_->metrics->TenantRefusal(caller_.ok() ? caller_->tenant : std::string(), refusal_);
    }
    // The client's stream ends only after its quota slot and lease are given
    // back, so its next turn never finds this one still counted or leased.
    if (admitted_) {
      admitted_ = false;
      ++pending_;
      ++releasing_;
      out.push_back([this, tenant = key_.tenant, holder = holder_] {
        deps_->options.quotas->EndTurn(tenant, holder,
                                       [this] { Post(Event{EventKind::kQuotaEnded}); });
      });
    }
    // A committed turn reads its worker stream to the end instead.
    if (!status.ok()) StopCall(call_, out);
    if (heartbeat_armed_) out.push_back([alarm = heartbeat_] { alarm->Cancel(); });
    if (leased_) {
      ++pending_;
      ++releasing_;
      out.push_back([this, key = key_, holder = holder_] {
        deps_->ledger->ReleaseLease(key, holder, [this](absl::Status s) {
          Post(Event{.kind = EventKind::kLeaseReleased, .status = std::move(s)});
        });
      });
    }
    if (releasing_ == 0) return BeginFinish(out);
    state_ = State::kReleasing;
  }

  // A lease release or quota end answered; the last one lets the turn finish.
  void OnReleased(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (--releasing_ == 0) BeginFinish(out);
  }

  void BeginFinish(std::vector<Action>& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    state_ = State::kFinishing;  // Pump finishes once the queue is written
  }

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
  std::vector<TurnMessage> messages_ ABSL_GUARDED_BY(mu_);
  // Read by the tokenizer on the work pool (hence atomic, not under mu_).
  std::atomic<bool> cancel_encoding_{false};
  EncodedTurn suffix_ ABSL_GUARDED_BY(mu_);
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

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* StartTurn(Deps* deps,
                                                      grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request,
                                                      absl::StatusOr<Caller> caller) {
  return new ChatTurn(deps, context, request, std::move(caller));
}

}  // namespace hc::router
