#include "router/service/turn.h"

#include <deque>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "grpcpp/alarm.h"
#include "grpcpp/client_context.h"
#include "router/service/validation.h"

namespace hc::router {
namespace {

namespace v1 = hybridcache::v1;
using Deps = ChatServiceImpl::Deps;

class Turn;

// One Execute call to a worker. Owned by its Turn.
class WorkerCall final : public grpc::ClientReadReactor<v1::ExecuteEvent> {
 public:
  WorkerCall(Turn* turn, std::shared_ptr<Worker> worker, v1::ExecuteRequest request,
             std::chrono::system_clock::time_point deadline)
      : turn_(turn), worker_(std::move(worker)), request_(std::move(request)) {
    ctx_.set_deadline(deadline);
  }
  void Start() {
    worker_->stub()->async()->Execute(&ctx_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void ReadNext() { StartRead(&event_); }
  void Cancel() { ctx_.TryCancel(); }
  const v1::ExecuteEvent& event() const { return event_; }
  Worker& worker() { return *worker_; }
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  Turn* const turn_;
  const std::shared_ptr<Worker> worker_;
  grpc::ClientContext ctx_;
  const v1::ExecuteRequest request_;
  v1::ExecuteEvent event_;
};

// gRPC operations decided under the turn's mutex and run after it is
// released (reactions never run while the lock is held).
struct Ops {
  const v1::CompleteEvent* write = nullptr;
  bool finish = false;
  grpc::Status finish_status;
  WorkerCall* start = nullptr;
  WorkerCall* read = nullptr;
  WorkerCall* cancel = nullptr;
};

class Turn final : public grpc::ServerWriteReactor<v1::CompleteEvent> {
 public:
  Turn(Deps* deps, grpc::CallbackServerContext* ctx, const v1::CompleteRequest* req)
      : deps_(deps), ctx_(ctx), req_(req), start_(absl::Now()) {
    {
      absl::MutexLock lock(&deps_->live_mu);
      ++deps_->live_turns;
    }
    Ops ops;
    {
      absl::MutexLock lock(&mu_);
      Begin(ops);
    }
    Run(ops);
  }

  void OnWriteDone(bool ok) override {
    Ops ops;
    {
      absl::MutexLock lock(&mu_);
      queue_.pop_front();
      if (!ok) {
        // The client is gone: stop the worker, nothing more to write.
        queue_.clear();
        cancelled_ = true;
        if (call_ != nullptr) ops.cancel = call_;
        FinishWith(grpc::Status(grpc::StatusCode::CANCELLED, "client stream closed"), ops);
      }
      if (!queue_.empty()) {
        ops.write = &queue_.front();
      } else {
        writing_ = false;
        if (finishing_ && !finish_called_) {
          finish_called_ = true;
          ops.finish = true;
          ops.finish_status = final_;
        }
        MaybeRead(ops);
      }
    }
    Run(ops);
  }

  void OnCancel() override {
    Ops ops;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      if (call_ != nullptr) {
        ops.cancel = call_;  // its OnDone finishes the turn
      } else if (alarm_ != nullptr && retry_pending_) {
        alarm_->Cancel();  // the alarm callback finishes the turn
      } else {
        FinishWith(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"), ops);
      }
    }
    Run(ops);
  }

  void OnDone() override { Unref(); }

  void OnWorkerEvent(WorkerCall* call, bool ok) {
    Ops ops;
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      if (!ok) {
        stream_ended_ = true;  // OnDone follows
      } else {
        HandleEvent(call->event(), ops);
        MaybeRead(ops);
      }
    }
    Run(ops);
  }

  void OnWorkerDone(WorkerCall* call, const grpc::Status& status) {
    Ops ops;
    {
      absl::MutexLock lock(&mu_);
      call->worker().AddInflight(-1);
      call_ = nullptr;
      if (committed_ || finishing_) {
        // Already decided (committed, failed, or the client went away).
      } else if (cancelled_) {
        FinishWith(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"), ops);
      } else if (state_missing_ && status.ok()) {
        if (!history_sent_) {
          StartAttempt(/*resend_history=*/true, ops);
        } else {
          FinishWith(grpc::Status(grpc::StatusCode::INTERNAL,
                                  "worker reported state missing although the history was sent"),
                     ops);
        }
      } else if (status.error_code() == grpc::StatusCode::ABORTED && !started_sent_ &&
                 attempts_ < deps_->options.max_attempts) {
        // This router holds the conversation's lease, so a worker-side ABORTED
        // can only be a turn it has not finished discarding yet (a cancel
        // still on its way to the engine): try again after the backoff.
        HC_LOG(INFO) << "turn " << holder_ << ": worker " << call->worker().id()
                     << " still finishing an earlier turn, retrying";
        ScheduleRetry();
      } else if (status.error_code() == grpc::StatusCode::UNAVAILABLE && !started_sent_ &&
                 attempts_ < deps_->options.max_attempts) {
        HC_LOG(WARNING) << "turn " << holder_ << ": worker " << call->worker().id()
                        << " unavailable (" << status.error_message() << "), retrying";
        deps_->pool->MarkUnhealthy(call->worker().id());
        ScheduleRetry();
      } else if (status.ok()) {
        FinishWith(grpc::Status(grpc::StatusCode::INTERNAL, "worker ended the turn without committing"),
                   ops);
      } else {
        FinishWith(status, ops);
      }
    }
    Run(ops);
    Unref();
  }

 private:
  ~Turn() override {
    absl::MutexLock lock(&deps_->live_mu);
    --deps_->live_turns;
  }

  void Run(const Ops& ops) {
    if (ops.cancel != nullptr) ops.cancel->Cancel();
    if (ops.start != nullptr) ops.start->Start();
    if (ops.read != nullptr) ops.read->ReadNext();
    if (ops.write != nullptr) StartWrite(ops.write);
    if (ops.finish) Finish(ops.finish_status);
  }

  void Unref() {
    bool last;
    {
      absl::MutexLock lock(&mu_);
      last = --refs_ == 0;
    }
    if (last) delete this;
  }

  void Begin(Ops& ops) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const TextCodec& codec = *deps_->codec;
    if (absl::Status s = ValidateCompleteRequest(*req_, codec.vocab_size()); !s.ok()) {
      return FinishWith(ToGrpcStatus(s), ops);
    }
    key_ = LedgerKey{req_->cache_salt(), req_->conversation_id()};
    holder_ = absl::StrCat(deps_->options.router_id, "/", deps_->next_turn.fetch_add(1));
    absl::Duration ttl = deps_->options.lease_ttl;
    const auto deadline = ctx_->deadline();
    if (deadline < std::chrono::system_clock::time_point::max()) {
      ttl = std::min(ttl, absl::FromChrono(deadline) - absl::Now() + absl::Seconds(5));
    }
    absl::StatusOr<ConversationRecord> rec = deps_->ledger->AcquireLease(key_, holder_, ttl);
    if (!rec.ok()) return FinishWith(ToGrpcStatus(rec.status()), ops);
    rec_ = std::move(rec).value();
    leased_ = true;
    if (req_->has_expected_round() && req_->expected_round() != rec_.round) {
      return FinishWith(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                     absl::StrCat("expected round ", req_->expected_round(),
                                                  " but the committed round is ", rec_.round)),
                        ops);
    }
    if (req_->messages_size() > 0) {
      for (const auto& m : req_->messages()) {
        TurnMessage t;
        ParseRole(m.role(), &t.role);  // validated above
        t.content = m.content();
        messages_.push_back(std::move(t));
      }
      TurnContext tc;
      tc.first_turn = rec_.tokens.empty();
      if (!rec_.tokens.empty()) tc.last_token = rec_.tokens.back();
      absl::StatusOr<EncodedTurn> enc = codec.EncodeTurn(messages_, tc);
      if (!enc.ok()) return FinishWith(ToGrpcStatus(enc.status()), ops);
      suffix_ = std::move(enc).value();
    } else {
      suffix_.tokens.assign(req_->suffix_token_ids().begin(), req_->suffix_token_ids().end());
    }
    const uint64_t context = rec_.tokens.size() + suffix_.tokens.size();
    const uint32_t max_len = deps_->options.max_model_len > 0 ? deps_->options.max_model_len
                                                              : deps_->pool->max_model_len();
    if (max_len > 0 && context >= max_len) {
      return FinishWith(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                     absl::StrCat("the conversation would have ", context,
                                                  " tokens of context; the model allows fewer than ",
                                                  max_len)),
                        ops);
    }
    decoder_ = codec.NewStreamDecoder();
    StartAttempt(/*resend_history=*/false, ops);
  }

  void StartAttempt(bool resend_history, Ops& ops) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++attempts_;
    if (!resend_history) {
      absl::StatusOr<RouteDecision> route = deps_->pool->Route(rec_.worker.worker_id);
      if (!route.ok()) return FinishWith(ToGrpcStatus(route.status()), ops);
      worker_ = route->worker;
      kind_ = route->kind;
      deps_->metrics->RoutingDecision(kind_);
    }
    if (worker_->stub() == nullptr) {
      return FinishWith(grpc::Status(grpc::StatusCode::INTERNAL, "worker without a channel"), ops);
    }
    v1::ExecuteRequest req;
    req.mutable_key()->set_cache_salt(key_.cache_salt);
    req.mutable_key()->set_conversation_id(key_.conversation_id);
    req.set_request_id(absl::StrCat(holder_, "#", attempts_));
    req.set_new_round(rec_.round + 1);
    *req.mutable_sampling() = req_->sampling();
    const bool sticky = !resend_history && kind_ == RouteKind::kSticky &&
                        rec_.worker.num_tokens <= rec_.tokens.size();
    if (sticky) {
      auto* e = req.mutable_expected();
      e->set_round(rec_.worker.round);
      e->set_num_tokens(rec_.worker.num_tokens);
      e->set_prefix_hash(rec_.worker.prefix_hash);
      auto* s = req.mutable_suffix_token_ids();
      s->Reserve(static_cast<int>(rec_.tokens.size() - rec_.worker.num_tokens + suffix_.tokens.size()));
      s->Add(rec_.tokens.begin() + rec_.worker.num_tokens, rec_.tokens.end());
      s->Add(suffix_.tokens.begin(), suffix_.tokens.end());
    } else {
      // New worker (or lost state): recompute from the ledger's history.
      req.set_has_history(!rec_.tokens.empty());
      req.mutable_history_token_ids()->Add(rec_.tokens.begin(), rec_.tokens.end());
      req.mutable_suffix_token_ids()->Add(suffix_.tokens.begin(), suffix_.tokens.end());
    }
    history_sent_ = !sticky;
    state_missing_ = false;
    stream_ended_ = false;
    worker_->AddInflight(1);
    calls_.push_back(std::make_unique<WorkerCall>(this, worker_, std::move(req), ctx_->deadline()));
    call_ = calls_.back().get();
    ++refs_;
    reading_ = true;  // Start() issues the first read
    ops.start = call_;
  }

  void ScheduleRetry() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const absl::Duration backoff = deps_->options.retry_backoff * (1 << (attempts_ - 1));
    alarm_ = std::make_unique<grpc::Alarm>();
    retry_pending_ = true;
    ++refs_;
    alarm_->Set(absl::ToChronoTime(absl::Now() + backoff), [this](bool fired) {
      Ops ops;
      {
        absl::MutexLock lock(&mu_);
        retry_pending_ = false;
        if (!fired || cancelled_) {
          FinishWith(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"), ops);
        } else if (!finishing_) {
          StartAttempt(/*resend_history=*/false, ops);
        }
      }
      Run(ops);
      Unref();
    });
  }

  void MaybeRead(Ops& ops) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // Backpressure: read the next worker event only once the client took the
    // previous ones.
    if (call_ != nullptr && !reading_ && !stream_ended_ && !writing_ && queue_.empty()) {
      reading_ = true;
      ops.read = call_;
    }
  }

  void Enqueue(v1::CompleteEvent event, Ops& ops) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    queue_.push_back(std::move(event));
    if (!writing_) {
      writing_ = true;
      ops.write = &queue_.front();
    }
  }

  void SendStarted(Ops& ops) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (started_sent_) return;
    started_sent_ = true;
    v1::CompleteEvent e;
    auto* s = e.mutable_started();
    s->set_round(rec_.round + 1);
    s->set_worker_id(worker_->id());
    s->set_prompt_tokens(PromptTokens());
    s->set_cached_tokens(started_.cached_tokens());
    Enqueue(std::move(e), ops);
    deps_->metrics->TimeToFirstToken(absl::ToDoubleSeconds(absl::Now() - start_));
  }

  uint32_t PromptTokens() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return have_started_ ? started_.prompt_tokens()
                         : static_cast<uint32_t>(rec_.tokens.size() + suffix_.tokens.size());
  }

  void HandleEvent(const v1::ExecuteEvent& ev, Ops& ops) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finishing_) return;
    switch (ev.event_case()) {
      case v1::ExecuteEvent::kStarted:
        started_ = ev.started();
        have_started_ = true;
        break;
      case v1::ExecuteEvent::kTokens: {
        SendStarted(ops);
        const auto& ids = ev.tokens().token_ids();
        generated_.insert(generated_.end(), ids.begin(), ids.end());
        v1::CompleteEvent e;
        auto* chunk = e.mutable_chunk();
        *chunk->mutable_token_ids() = ids;
        chunk->set_text(decoder_->Push(std::span<const uint32_t>(ids.data(), ids.size())));
        *chunk->mutable_logprobs() = ev.tokens().logprobs();
        Enqueue(std::move(e), ops);
        break;
      }
      case v1::ExecuteEvent::kCommitted:
        Commit(ev.committed(), ops);
        break;
      case v1::ExecuteEvent::kStateMissing:
        state_missing_ = true;
        HC_LOG(INFO) << "turn " << holder_ << ": worker " << worker_->id()
                     << " lost the state (" << ev.state_missing().reason() << "), resending history";
        break;
      default:
        break;
    }
  }

  void Commit(const v1::CommitReport& report, Ops& ops) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    SendStarted(ops);
    if (std::string rest = decoder_->Flush(); !rest.empty()) {
      v1::CompleteEvent e;
      e.mutable_chunk()->set_text(std::move(rest));
      Enqueue(std::move(e), ops);
    }
    const TextCodec& codec = *deps_->codec;
    const uint32_t base = static_cast<uint32_t>(rec_.tokens.size());
    CommitRequest c;
    c.expected_round = rec_.round;
    c.appended_tokens.reserve(suffix_.tokens.size() + generated_.size());
    c.appended_tokens = suffix_.tokens;
    c.appended_tokens.insert(c.appended_tokens.end(), generated_.begin(), generated_.end());
    if (!messages_.empty()) {
      for (size_t i = 0; i < messages_.size(); ++i) {
        c.appended_messages.push_back(LedgerMessage{messages_[i].role, base + suffix_.message_begins[i],
                                                    base + suffix_.message_ends[i],
                                                    messages_[i].content});
      }
    } else {
      // Raw tokens: recorded as a user message with their decoded text.
      c.appended_messages.push_back(LedgerMessage{
          Role::kUser, base, base + static_cast<uint32_t>(suffix_.tokens.size()), codec.Decode(suffix_.tokens)});
    }
    const uint32_t reply_begin = base + static_cast<uint32_t>(suffix_.tokens.size());
    c.appended_messages.push_back(LedgerMessage{Role::kAssistant, reply_begin,
                                                reply_begin + static_cast<uint32_t>(generated_.size()),
                                                codec.Decode(generated_)});
    c.worker = WorkerState{worker_->id(), report.state().round(), report.state().num_tokens(),
                           report.state().prefix_hash()};
    if (absl::Status s = deps_->ledger->Commit(key_, holder_, c); !s.ok()) {
      HC_LOG(WARNING) << "turn " << holder_ << ": ledger commit failed: " << s;
      return FinishWith(ToGrpcStatus(s), ops);
    }
    committed_ = true;
    leased_ = false;
    v1::CompleteEvent e;
    auto* done = e.mutable_completed();
    done->set_finish_reason(report.finish_reason());
    done->set_committed_round(rec_.round + 1);
    done->mutable_usage()->set_prompt_tokens(PromptTokens());
    done->mutable_usage()->set_cached_tokens(started_.cached_tokens());
    done->mutable_usage()->set_completion_tokens(
        report.completion_tokens() > 0 ? report.completion_tokens() : static_cast<uint32_t>(generated_.size()));
    Enqueue(std::move(e), ops);
    FinishWith(grpc::Status::OK, ops);
  }

  // Decides the final status (first decision wins): releases the lease unless
  // committed, records metrics, and finishes once queued writes are out.
  void FinishWith(const grpc::Status& status, Ops& ops) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finishing_) return;
    finishing_ = true;
    final_ = status;
    if (leased_) {
      if (absl::Status s = deps_->ledger->ReleaseLease(key_, holder_); !s.ok()) {
        // It expires by itself; the turn's outcome stands.
        HC_LOG(WARNING) << "turn " << holder_ << ": cannot release the lease: " << s;
      }
      leased_ = false;
    }
    deps_->metrics->Request(static_cast<absl::StatusCode>(status.error_code()),
                            absl::ToDoubleSeconds(absl::Now() - start_));
    if (!writing_) {
      finish_called_ = true;
      ops.finish = true;
      ops.finish_status = status;
    }
  }

  Deps* const deps_;
  grpc::CallbackServerContext* const ctx_;
  const v1::CompleteRequest* const req_;
  const absl::Time start_;

  absl::Mutex mu_;
  int refs_ ABSL_GUARDED_BY(mu_) = 1;  // the client stream, + worker calls, + a retry alarm
  LedgerKey key_ ABSL_GUARDED_BY(mu_);
  std::string holder_ ABSL_GUARDED_BY(mu_);
  bool leased_ ABSL_GUARDED_BY(mu_) = false;
  ConversationRecord rec_ ABSL_GUARDED_BY(mu_);
  std::vector<TurnMessage> messages_ ABSL_GUARDED_BY(mu_);
  EncodedTurn suffix_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<StreamDecoder> decoder_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Worker> worker_ ABSL_GUARDED_BY(mu_);
  RouteKind kind_ ABSL_GUARDED_BY(mu_) = RouteKind::kPlaced;
  // Every call of this turn (freed with the turn: a call may still be inside
  // its own OnDone when the next attempt starts).
  std::vector<std::unique_ptr<WorkerCall>> calls_ ABSL_GUARDED_BY(mu_);
  WorkerCall* call_ ABSL_GUARDED_BY(mu_) = nullptr;  // the active one
  std::unique_ptr<grpc::Alarm> alarm_ ABSL_GUARDED_BY(mu_);
  bool retry_pending_ ABSL_GUARDED_BY(mu_) = false;
  int attempts_ ABSL_GUARDED_BY(mu_) = 0;
  bool history_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool state_missing_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool stream_ended_ ABSL_GUARDED_BY(mu_) = false;
  v1::ExecuteStarted started_ ABSL_GUARDED_BY(mu_);
  bool have_started_ ABSL_GUARDED_BY(mu_) = false;
  bool started_sent_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<uint32_t> generated_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::CompleteEvent> queue_ ABSL_GUARDED_BY(mu_);  // front is being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool committed_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_ ABSL_GUARDED_BY(mu_);
};

void WorkerCall::OnReadDone(bool ok) { turn_->OnWorkerEvent(this, ok); }
void WorkerCall::OnDone(const grpc::Status& status) { turn_->OnWorkerDone(this, status); }

}  // namespace

grpc::ServerWriteReactor<v1::CompleteEvent>* StartTurn(Deps* deps, grpc::CallbackServerContext* context,
                                                      const v1::CompleteRequest* request) {
  return new Turn(deps, context, request);
}

}  // namespace hc::router
