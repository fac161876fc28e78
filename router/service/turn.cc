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
//                lease held, fork_from: not a new
//                  conversation                   kReleasing (FAILED_PRECONDITION)
//                lease held, fork_from            kLeasing: ledger Get of the source
//                fork source: missing, too few
//                  messages, error                kReleasing (that status)
//                fork source read                 its first messages are the
//                                                 history; as "lease held" below
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
//
// This file: the transition function (Apply) and the turn from its start to
// the worker, and its end (Abort, Conclude). The class and the other parts of
// the machine: turn_reactor.h.
#include "router/service/turn.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/retry_delay.h"
#include "router/service/rewrite.h"
#include "router/service/turn_reactor.h"
#include "router/service/turn_requests.h"
#include "router/service/validation.h"

namespace hc::router {
namespace turn_internal {
namespace {

// Messages up to this many bytes are tokenized inline (microseconds); longer
// ones on the work pool.
constexpr uint64_t kInlineEncodeBytes = 16 << 10;
// Tenant refusal reasons (metrics) besides the quotas' (QuotaRefusalName).
constexpr char kRefusedUnauthenticated[] = "unauthenticated";
constexpr char kRefusedPermission[] = "permission_denied";
constexpr char kRefusedConversations[] = "conversations";

}  // namespace

void ChatTurn::Apply(Event& e, std::vector<Action>& out) {
  switch (e.kind) {
    case EventKind::kStart:
      return OnStart(out);
    case EventKind::kAdmitted:
      --pending_;
      return OnAdmitted(e.status, e.refusal, out);
    case EventKind::kLeaseAcquired:
      --pending_;
      return OnLeaseAcquired(std::move(*e.record), out);
    case EventKind::kForkSource:
      --pending_;
      return OnForkSource(std::move(*e.record), out);
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
          deps_->ledger->RenewLease(key, holder, deps_->options.lease_ttl, [this](absl::Status s) {
            Post(Event{.kind = EventKind::kLeaseRenewed, .status = std::move(s)});
          });
        });
      }
      return;
  }
}

void ChatTurn::OnStart(std::vector<Action>& out) {
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
                       .refusal = a.refusal == QuotaRefusal::kNone ? nullptr
                                                                   : QuotaRefusalName(a.refusal)});
          });
    });
    return;
  }
  StartLeasing(out);
}

void ChatTurn::OnAdmitted(const absl::Status& status, const char* refusal,
                          std::vector<Action>& out) {
  if (!status.ok()) {
    refusal_ = refusal;
    return Conclude(ToGrpcStatus(status), out);
  }
  admitted_ = true;
  if (abort_.has_value()) return Conclude(*abort_, out);  // the client left meanwhile
  StartLeasing(out);
}

void ChatTurn::StartLeasing(std::vector<Action>& out) {
  state_ = State::kLeasing;
  ++pending_;
  out.push_back([this, key = key_, holder = holder_] {
    deps_->ledger->AcquireLease(
        key, holder, deps_->options.lease_ttl, [this](absl::StatusOr<ConversationRecord> r) {
          Post(Event{.kind = EventKind::kLeaseAcquired, .record = std::move(r)});
        });
  });
}

void ChatTurn::OnLeaseAcquired(absl::StatusOr<ConversationRecord> rec, std::vector<Action>& out) {
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
  if (req_->has_fork_from()) {
    if (rec_.round != 0) {
      return Conclude(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                   absl::StrCat("fork_from starts a new conversation, but '",
                                                key_.conversation_id, "' has ", rec_.round,
                                                " committed rounds")),
                      out);
    }
    ++pending_;
    out.push_back(
        [this, key = LedgerKey{key_.cache_salt, req_->fork_from().conversation_id(), key_.tenant}] {
          deps_->ledger->Get(key, [this](absl::StatusOr<ConversationRecord> r) {
            Post(Event{.kind = EventKind::kForkSource, .record = std::move(r)});
          });
        });
    return;
  }
  OnLeased(out);
}

void ChatTurn::OnForkSource(absl::StatusOr<ConversationRecord> source, std::vector<Action>& out) {
  if (abort_.has_value()) return Conclude(*abort_, out);  // the client left meanwhile
  if (!source.ok()) {
    if (absl::IsNotFound(source.status())) {
      return Conclude(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                   absl::StrCat("fork_from: no conversation '",
                                                req_->fork_from().conversation_id(), "'")),
                      out);
    }
    return Conclude(ToGrpcStatus(source.status()), out);
  }
  const uint32_t n = req_->fork_from().num_messages();
  if (n > source->messages.size()) {
    return Conclude(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 absl::StrCat("fork_from.num_messages is ", n, " but '",
                                              req_->fork_from().conversation_id(), "' has ",
                                              source->messages.size(), " messages")),
                    out);
  }
  // Exactly the committed tokens of those messages (a reply's tokens are not
  // re-derived from its text, which may tokenize differently).
  rec_.messages.assign(source->messages.begin(), source->messages.begin() + n);
  rec_.tokens.assign(source->tokens.begin(), source->tokens.begin() + rec_.messages.back().end);
  forked_ = true;
  OnLeased(out);
}

void ChatTurn::OnLeased(std::vector<Action>& out) {
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
  uint64_t history_bytes = 0;
  tc.history.reserve(rec_.messages.size());
  for (const LedgerMessage& m : rec_.messages) {
    tc.history.push_back(TurnMessage{m.role, m.text});
    history_bytes += m.text.size();
  }
  // Rendering and tokenizing are CPU work proportional to the text (the chat
  // template renders the history too). A short text (tens of microseconds)
  // is encoded right here; a longer one on the work pool, never on a gRPC or
  // ledger thread, stopping early on a cancel.
  if (MessageBytes() + history_bytes <= kInlineEncodeBytes) {
    messages_ = ParseMessages(*req_);
    return OnEncoded(deps_->codec->EncodeTurn(messages_, tc), out);
  }
  state_ = State::kEncoding;
  ++pending_;
  out.push_back([this, tc = std::move(tc)]() mutable {
    deps_->work_pool->Schedule([this, tc = std::move(tc)] {
      std::vector<TurnMessage> messages = ParseMessages(*req_);
      absl::StatusOr<EncodedTurn> enc = deps_->codec->EncodeTurn(messages, tc, &cancel_encoding_);
      Post(Event{
          .kind = EventKind::kEncoded, .encoded = std::move(enc), .messages = std::move(messages)});
    });
  });
}

std::vector<TurnMessage> ChatTurn::ParseMessages(const v1::CompleteRequest& req) {
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

uint64_t ChatTurn::MessageBytes() const {
  uint64_t bytes = 0;
  for (const auto& m : req_->messages()) bytes += m.content().size();
  return bytes;
}

void ChatTurn::OnEncoded(absl::StatusOr<EncodedTurn> enc, std::vector<Action>& out) {
  if (abort_.has_value()) return Conclude(*abort_, out);  // cancelled meanwhile
  if (!enc.ok()) return Conclude(ToGrpcStatus(enc.status()), out);
  suffix_ = *std::move(enc);
  if (suffix_.rewrite) {
    // From here on the turn continues the kept prefix like any other turn;
    // only the commit differs (it replaces what came after the prefix).
    absl::StatusOr<uint32_t> kept = ApplyRewrite(rec_, messages_, suffix_);
    if (!kept.ok()) return Conclude(ToGrpcStatus(kept.status()), out);
    rewrite_from_ = *kept;
    deps_->metrics->RewriteTurn(*kept);
  }
  if (absl::Status s = CheckContext(rec_.tokens.size(), suffix_.tokens.size(), /*exact=*/true);
      !s.ok()) {
    return Conclude(ToGrpcStatus(s), out);
  }
  const auto& stops = req_->sampling().stop();
  reply_.emplace(deps_->codec, std::vector<std::string>(stops.begin(), stops.end()));
  StartAttempt(/*resend_history=*/false, out);
}

absl::Status ChatTurn::CheckContext(uint64_t history, uint64_t suffix, bool exact) const {
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

uint64_t ChatTurn::MinSuffixTokens() const {
  if (req_->messages_size() == 0) return static_cast<uint64_t>(req_->suffix_token_ids_size());
  return MessageBytes() / std::max<size_t>(1, deps_->codec->max_token_bytes());
}

void ChatTurn::Abort(const grpc::Status& status, std::vector<Action>& out) {
  if (abort_.has_value()) return;
  abort_ = status;
  switch (state_) {
    case State::kStreaming:
      return StopCall(call_, out);  // its end fails the turn
    case State::kBackoff:
      out.push_back([alarm = retry_alarm_] { alarm->Cancel(); });
      return Conclude(status, out);
    case State::kEncoding:
      cancel_encoding_.store(true);   // fails once the tokenizer has stopped
      cancel_encoding_.notify_all();  // a tokenizer may wait on it (text_codec.h)
      return;
    default:
      return;  // kAdmitting, kLeasing: fail on their answer; later states decided
  }
}

void ChatTurn::Conclude(const grpc::Status& status, std::vector<Action>& out) {
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

void ChatTurn::OnReleased(std::vector<Action>& out) {
  if (--releasing_ == 0) BeginFinish(out);
}

void ChatTurn::BeginFinish(std::vector<Action>& out) {
  state_ = State::kFinishing;  // Pump finishes once the queue is written
}

}  // namespace turn_internal

grpc::ServerWriteReactor<grpc::ByteBuffer>* StartTurn(ChatServiceImpl::Deps* deps,
                                                      grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request,
                                                      absl::StatusOr<Caller> caller) {
  return new turn_internal::ChatTurn(deps, context, request, std::move(caller));
}

}  // namespace hc::router
