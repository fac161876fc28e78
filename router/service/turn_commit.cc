// The turn's commit and lease heartbeat (see turn.cc): the worker's commit
// report recorded in the ledger, and the lease renewed every lease_ttl / 3
// while the turn holds it.
#include <utility>
#include <vector>

#include "common/grpc_status.h"
#include "common/logging.h"
#include "router/service/turn_reactor.h"
#include "router/service/turn_requests.h"

namespace hc::router::turn_internal {

void ChatTurn::StartCommit(const v1::CommitReport& report, std::vector<Action>& out) {
  SendStarted(out);
  // The rest of the reply; with a stop string, only the text before it
  // (its cut token re-tokenized), and that is what the ledger records.
  absl::StatusOr<ReplyStream::Chunk> rest = reply_->Finish(report);
  if (!rest.ok()) {
    HC_LOG(ERROR) << "turn " << holder_ << ": " << rest.status();
    return Conclude(ToGrpcStatus(rest.status()), out);
  }
  SendChunk(*rest, out);
  report_ = report;
  CommitRequest c =
      BuildCommitRequest(*deps_->codec, rec_, messages_, suffix_, reply_->reply_tokens(),
                         WorkerState{worker_->id(), report.state().round(),
                                     report.state().num_tokens(), report.state().prefix_hash()});
  if (forked_) {
    // The ledger holds nothing of this conversation yet: the copied history
    // (on a rewrite turn, the part of it the turn kept) is committed with the
    // turn, so there is nothing to replace.
    c.appended_tokens.insert(c.appended_tokens.begin(), rec_.tokens.begin(), rec_.tokens.end());
    c.appended_messages.insert(c.appended_messages.begin(), rec_.messages.begin(),
                               rec_.messages.end());
  } else {
    c.rewrite_from = rewrite_from_;
  }
  // The usage TurnCompleted will report, committed with the round so that
  // any router can answer for it later (GET /v1/responses/{id}).
  c.usage = TurnUsage();
  state_ = State::kCommitting;
  ++pending_;
  out.push_back([this, key = key_, holder = holder_, c = std::move(c)]() mutable {
    deps_->ledger->Commit(key, holder, std::move(c), [this](absl::Status s) {
      Post(Event{.kind = EventKind::kCommitted, .status = std::move(s)});
    });
  });
}

void ChatTurn::OnCommitted(const absl::Status& status, std::vector<Action>& out) {
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
  const RoundUsage usage = TurnUsage();
  done->mutable_usage()->set_prompt_tokens(usage.prompt_tokens);
  done->mutable_usage()->set_cached_tokens(usage.cached_tokens);
  done->mutable_usage()->set_completion_tokens(usage.completion_tokens);
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

RoundUsage ChatTurn::TurnUsage() const {
  return RoundUsage{PromptTokens(), started_.cached_tokens(),
                    report_.completion_tokens() > 0
                        ? report_.completion_tokens()
                        : static_cast<uint32_t>(reply_->num_generated())};
}

void ChatTurn::ArmHeartbeat(std::vector<Action>& out) {
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

void ChatTurn::OnLeaseRenewed(const absl::Status& status, std::vector<Action>& out) {
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

}  // namespace hc::router::turn_internal
