// The turn's worker calls (see turn.cc): an attempt on the routed worker, its
// events read with backpressure from the client stream, its end, and the
// retry of a failed attempt after a backoff.
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "router/service/turn_reactor.h"
#include "router/service/turn_requests.h"

namespace hc::router::turn_internal {

void ChatTurn::StartAttempt(bool resend_history, std::vector<Action>& out) {
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
  // With a template that rewrites history, the next turn keeps the committed
  // tokens up to (at least) the end of this prompt's last message: a snapshot
  // there lets it resume instead of recomputing from token 0.
  std::optional<uint32_t> snapshot_at;
  if (deps_->codec->RewritesHistory() && !suffix_.message_ends.empty() &&
      rec_.tokens.size() + suffix_.message_ends.back() > 0) {
    snapshot_at = static_cast<uint32_t>(rec_.tokens.size()) + suffix_.message_ends.back();
  }
  v1::ExecuteRequest req = BuildExecuteRequest({.key = &key_,
                                                .record = &rec_,
                                                .suffix = &suffix_,
                                                .request_id = absl::StrCat(holder_, "#", attempts_),
                                                .sticky = sticky,
                                                .snapshot_at = snapshot_at});
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

void ChatTurn::OnWorkerReadEvent(WorkerCall* call, bool ok, std::vector<Action>& out) {
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

void ChatTurn::HandleWorkerEvent(const v1::ExecuteEvent& ev, std::vector<Action>& out) {
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
                             std::span<const float>(logprobs.data(), logprobs.size()),
                             ev.tokens().top_logprobs()),
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

void ChatTurn::OnWorkerDoneEvent(WorkerCall* call, const grpc::Status& status,
                                 std::vector<Action>& out) {
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
        grpc::Status(grpc::StatusCode::INTERNAL, "worker ended the turn without committing"), out);
  }
  Conclude(status, out);
}

void ChatTurn::MaybeRead(std::vector<Action>& out) {
  WorkerCall* call = call_;
  if (call == nullptr || call->reading || call->stopping || call->released) return;
  if (state_ == State::kStreaming && queue_.size() >= kMaxQueuedEvents) return;
  call->reading = true;
  out.push_back([call] { call->Read(); });
}

void ChatTurn::StopCall(WorkerCall* call, std::vector<Action>& out) {
  if (call == nullptr || call->released) return;
  call->stopping = true;
  out.push_back([call] { call->Cancel(); });
  ReleaseCall(call, out);
}

void ChatTurn::ReleaseCall(WorkerCall* call, std::vector<Action>& out) {
  if (call->reading || call->released) return;
  call->released = true;
  out.push_back([call] { call->Release(); });
}

void ChatTurn::ScheduleRetry(std::vector<Action>& out) {
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

}  // namespace hc::router::turn_internal
