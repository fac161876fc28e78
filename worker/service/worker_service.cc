#include "worker/service/worker_service.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/raw_proto.h"
#include "common/request_checks.h"
#include "common/status_macros.h"

namespace hc::worker {
namespace {

namespace pb = hybridcache::v1;

// Writes one Execute stream. Events arrive from the engine thread (through
// Observer) and leave one write at a time; consecutive token events are
// merged while a write is in flight, so a slow client costs one message, not
// one per token.
//
// Locking (the style of router/service/turn.cc): what to do next is decided
// under mu_ (a Step), and the gRPC call it names (StartWrite or Finish) is
// made after unlocking, so no gRPC call runs under a lock this reactor's
// reactions take. NextLocked() hands out a write only when none is in flight
// and Finish only once, so a reactor that has handed out a call outlives the
// thread that makes it (OnDone, which deletes it, follows Finish).
class ExecuteReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  // Forwards the engine's events to the reactor until the reactor is done.
  class Observer final : public engine::TurnObserver {
   public:
    Observer(ExecuteReactor* reactor, std::string worker_id)
        : worker_id_(std::move(worker_id)), reactor_(reactor) {}
    void Detach() {
      absl::MutexLock lock(&mu_);
      reactor_ = nullptr;
    }
    void OnStarted(const engine::TurnStart& s) override {
      pb::ExecuteEvent ev;
      auto* started = ev.mutable_started();
      started->set_worker_id(worker_id_);
      started->set_prompt_tokens(static_cast<uint32_t>(s.prompt_tokens));
      started->set_cached_tokens(static_cast<uint32_t>(s.cached_tokens));
      Push(std::move(ev), std::nullopt);
    }
    void OnTokens(std::span<const int32_t> ids, std::span<const float> logprobs,
                  std::span<const engine::TokenAlternative> top) override {
      pb::ExecuteEvent ev;
      auto* batch = ev.mutable_tokens();
      for (const int32_t id : ids) batch->add_token_ids(static_cast<uint32_t>(id));
      for (const float lp : logprobs) batch->add_logprobs(lp);
      if (!top.empty() && !ids.empty()) {
        const size_t k = top.size() / ids.size();
        for (size_t i = 0; i < ids.size(); ++i) {
          pb::TopLogprobs* t = batch->add_top_logprobs();
          for (const engine::TokenAlternative& a : top.subspan(i * k, k)) {
            t->add_token_ids(static_cast<uint32_t>(a.token));
            t->add_logprobs(a.logprob);
          }
        }
      }
      Push(std::move(ev), std::nullopt);
    }
    void OnCommitted(const engine::TurnResult& r) override {
      pb::ExecuteEvent ev;
      auto* report = ev.mutable_committed();
      report->mutable_state()->set_round(r.committed.round);
      report->mutable_state()->set_num_tokens(static_cast<uint32_t>(r.committed.num_tokens));
      report->mutable_state()->set_prefix_hash(r.committed.token_hash);
      report->set_finish_reason(r.finish_reason);
      report->set_completion_tokens(static_cast<uint32_t>(r.completion_tokens));
      report->set_commit_seconds(r.commit_seconds);
      if (r.snapshot.has_value()) {
        report->mutable_snapshot()->set_round(r.snapshot->round);
        report->mutable_snapshot()->set_num_tokens(static_cast<uint32_t>(r.snapshot->num_tokens));
        report->mutable_snapshot()->set_prefix_hash(r.snapshot->token_hash);
      }
      if (r.stop_string.has_value()) {
        report->mutable_stop_string()->set_reply_bytes(
            static_cast<uint32_t>(r.stop_string->reply_bytes));
        report->mutable_stop_string()->set_tokens_before(
            static_cast<uint32_t>(r.stop_string->tokens_before));
      }
      Push(std::move(ev), grpc::Status::OK);
    }
    void OnStateMissing(std::string_view reason) override {
      pb::ExecuteEvent ev;
      ev.mutable_state_missing()->set_reason(std::string(reason));
      Push(std::move(ev), grpc::Status::OK);
    }
    void OnFailed(const absl::Status& status) override { Push(std::nullopt, ToGrpcStatus(status)); }

   private:
    void Push(std::optional<pb::ExecuteEvent> ev, std::optional<grpc::Status> final) {
      ExecuteReactor* reactor = nullptr;
      Step step;
      {
        // mu_ keeps the reactor from being detached (and deleted) while the
        // step is decided; the step's own call keeps it alive after.
        absl::MutexLock lock(&mu_);
        if (reactor_ == nullptr) return;
        reactor = reactor_;
        step = reactor->Enqueue(std::move(ev), std::move(final));
      }
      // Without a call to make, the reactor may already be gone.
      if (step.has_call()) reactor->Take(step);
    }
    const std::string worker_id_;
    absl::Mutex mu_;
    ExecuteReactor* reactor_ ABSL_GUARDED_BY(mu_);
  };

  // `parsed` says whether the raw request parsed into `request`.
  ExecuteReactor(const WorkerServiceOptions& options, const absl::Status& parsed,
                 const pb::ExecuteRequest& request)
      : options_(options), observer_(std::make_shared<Observer>(this, options.worker_id)) {
    absl::StatusOr<engine::TurnSpec> turn = parsed.ok() ? TurnFromProto(request, options_) : parsed;
    if (turn.ok()) {
      std::string request_id = turn->request_id;
      const absl::Status submitted = options_.engine->Submit(*std::move(turn), observer_);
      if (submitted.ok()) {
        // Only an accepted turn is ever cancelled: a refused one (queue full,
        // draining, or ABORTED because its id is in use by another stream)
        // must not cancel a turn it does not own.
        request_id_ = std::move(request_id);
        return;
      }
      turn = submitted;
    }
    Take(Enqueue(std::nullopt, ToGrpcStatus(turn.status())));
  }

  void OnWriteDone(bool ok) override {
    Step step;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        // The client is gone: drop what is queued and end the stream
        // (whatever the turn's own outcome); OnCancel tells the engine.
        queue_.clear();
        final_ = grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke");
      }
      step = NextLocked();
    }
    Take(step);
  }

  void OnCancel() override {
    if (!request_id_.empty()) options_.engine->Cancel(request_id_);
  }

  void OnDone() override {
    observer_->Detach();
    delete this;
  }

 private:
  // The next gRPC call on the stream, decided under mu_; empty: none.
  struct Step {
    bool has_call() const { return write != nullptr || finish.has_value(); }
    grpc::ByteBuffer* write = nullptr;   // StartWrite(write)
    std::optional<grpc::Status> finish;  // Finish(*finish)
  };

  // Makes the call `step` names. Called without mu_; touches nothing of the
  // reactor after the call (a reaction may delete it from then on).
  void Take(const Step& step) {
    if (step.write != nullptr) {
      StartWrite(step.write);
    } else if (step.finish.has_value()) {
      Finish(*step.finish);
    }
  }

  // Queues an event and/or the final status; returns the step to take.
  [[nodiscard]] Step Enqueue(std::optional<pb::ExecuteEvent> ev,
                             std::optional<grpc::Status> final) {
    absl::MutexLock lock(&mu_);
    if (finishing_) return {};
    if (ev.has_value()) {
      // Merge into a queued token batch rather than queueing a new message.
      if (ev->has_tokens() && !queue_.empty() && queue_.back().has_tokens()) {
        auto* tail = queue_.back().mutable_tokens();
        tail->mutable_token_ids()->MergeFrom(ev->tokens().token_ids());
        tail->mutable_logprobs()->MergeFrom(ev->tokens().logprobs());
        tail->mutable_top_logprobs()->MergeFrom(ev->tokens().top_logprobs());
      } else {
        queue_.push_back(std::move(*ev));
      }
    }
    if (final.has_value()) final_ = std::move(final);
    return NextLocked();
  }

  // The next write when none is in flight, else Finish once everything queued
  // has been written and the final status is known.
  Step NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finishing_) return {};
    if (!queue_.empty()) {
      current_ = SerializeRawResponse(queue_.front());
      queue_.pop_front();
      writing_ = true;
      return {.write = &current_};
    }
    if (!final_.has_value()) return {};
    finishing_ = true;
    return {.finish = *final_};
  }

  const WorkerServiceOptions& options_;
  const std::shared_ptr<Observer> observer_;
  std::string request_id_;
  absl::Mutex mu_;
  std::deque<pb::ExecuteEvent> queue_ ABSL_GUARDED_BY(mu_);
  grpc::ByteBuffer current_ ABSL_GUARDED_BY(mu_);  // the message being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> final_ ABSL_GUARDED_BY(mu_);
};

absl::Status CheckKey(const pb::ConversationKey& key) {
  if (key.tenant().size() > kMaxTenantBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tenant has ", key.tenant().size(), " bytes; at most ", kMaxTenantBytes, " are allowed"));
  }
  return ValidateConversationKey(key.conversation_id(), key.cache_salt());
}

// Checks that every id of `ids` (the field `name`) is below `vocab_size` and
// appends it to `out`.
template <typename Ids>
absl::Status CheckedTokenIds(const Ids& ids, const char* name, int vocab_size,
                             std::vector<int32_t>* out) {
  out->reserve(static_cast<size_t>(ids.size()));
  for (int i = 0; i < ids.size(); ++i) {
    if (ids[i] >= static_cast<uint32_t>(vocab_size)) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, "[", i, "] = ", ids[i], " is outside the vocabulary (size ", vocab_size, ")"));
    }
    out->push_back(static_cast<int32_t>(ids[i]));
  }
  return absl::OkStatus();
}

// Finishes a unary call with `status`.
grpc::ServerUnaryReactor* Finished(grpc::CallbackServerContext* context,
                                   const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace

absl::StatusOr<engine::TurnSpec> TurnFromProto(const pb::ExecuteRequest& request,
                                               const WorkerServiceOptions& options) {
  HC_RETURN_IF_ERROR(CheckKey(request.key()));
  if (request.request_id().size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("request_id is ", request.request_id().size(),
                                                   " bytes, at most ", kMaxRequestIdBytes,
                                                   " allowed"));
  }
  if (request.suffix_token_ids().empty()) {
    return absl::InvalidArgumentError("suffix_token_ids is empty: the turn adds no tokens");
  }
  if (request.new_round() == 0 ||
      (request.has_expected() && request.new_round() <= request.expected().round())) {
    return absl::InvalidArgumentError(
        "new_round must be greater than the expected round (and > 0)");
  }
  // Sizes before any copy: the context must leave room for one token.
  const int64_t history =
      std::max<int64_t>(request.has_expected() ? request.expected().num_tokens() : 0,
                        request.history_token_ids_size());
  const int64_t context = history + request.suffix_token_ids_size();
  if (context >= options.max_model_len) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "context of ", context, " tokens leaves no room to generate within max_model_len ",
        options.max_model_len));
  }
  if (request.has_snapshot_at() &&
      (request.snapshot_at() < 1 || request.snapshot_at() > static_cast<uint64_t>(context))) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot_at ", request.snapshot_at(),
                                                   " is outside the turn's context [1, ", context,
                                                   "]"));
  }
  HC_RETURN_IF_ERROR(
      ValidateSamplingParams(request.sampling(), static_cast<uint32_t>(options.vocab_size)));

  engine::TurnSpec turn;
  turn.key = {request.key().cache_salt(), request.key().conversation_id(), request.key().tenant()};
  turn.request_id = request.request_id().empty()
                        ? absl::StrCat(request.key().cache_salt(), "/",
                                       request.key().conversation_id(), "/", request.new_round())
                        : request.request_id();
  if (request.has_expected()) {
    turn.expected = cache::RoundStamp{.round = request.expected().round(),
                                      .num_tokens = request.expected().num_tokens(),
                                      .token_hash = request.expected().prefix_hash()};
  }
  turn.new_round = request.new_round();
  HC_RETURN_IF_ERROR(CheckedTokenIds(request.suffix_token_ids(), "suffix_token_ids",
                                     options.vocab_size, &turn.suffix));
  if (request.has_snapshot_at()) turn.snapshot_at = request.snapshot_at();
  turn.has_history = request.has_history();
  HC_RETURN_IF_ERROR(CheckedTokenIds(request.history_token_ids(), "history_token_ids",
                                     options.vocab_size, &turn.history));

  const pb::SamplingParams& s = request.sampling();
  engine::TurnSampling& out = turn.sampling;
  out.sampler.temperature = s.has_temperature() ? s.temperature() : 1.0f;
  out.sampler.top_p = s.has_top_p() ? s.top_p() : 1.0f;
  out.sampler.top_k = static_cast<int>(s.top_k());  // <= INT32_MAX (checked)
  if (s.has_max_tokens())
    out.max_tokens = static_cast<int>(std::min<uint32_t>(s.max_tokens(), INT32_MAX));
  if (s.has_seed()) out.seed = s.seed();
  HC_RETURN_IF_ERROR(CheckedTokenIds(s.stop_token_ids(), "sampling.stop_token_ids",
                                     options.vocab_size, &out.stop_token_ids));
  out.stop_strings.assign(s.stop().begin(), s.stop().end());
  out.ignore_eos = s.ignore_eos();
  out.logprobs = s.logprobs();
  out.top_logprobs = static_cast<int>(s.top_logprobs());  // <= kMaxTopLogprobs (checked)
  return turn;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* WorkerServiceImpl::Execute(
    grpc::CallbackServerContext*, const grpc::ByteBuffer* raw) {
  pb::ExecuteRequest request;
  return new ExecuteReactor(options_, ParseRawRequest(*raw, &request), request);
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Load(grpc::CallbackServerContext* context,
                                                  const grpc::ByteBuffer* raw,
                                                  grpc::ByteBuffer* response) {
  pb::LoadRequest request;
  if (absl::Status s = ParseRawRequest(*raw, &request); !s.ok()) return Finished(context, s);
  const engine::EngineLoad load = options_.engine->Load();
  pb::LoadReport report;
  report.set_worker_id(options_.worker_id);
  report.set_num_running(load.num_running);
  report.set_num_waiting(load.num_waiting);
  report.set_free_kv_blocks(static_cast<uint32_t>(load.cache.kv_blocks_free));
  report.set_total_kv_blocks(static_cast<uint32_t>(load.cache.kv_blocks_total));
  report.set_free_mamba_slots(static_cast<uint32_t>(load.cache.mamba_slots_free));
  report.set_total_mamba_slots(static_cast<uint32_t>(load.cache.mamba_slots_total));
  report.set_committed_conversations(static_cast<uint32_t>(load.cache.conversations));
  report.set_draining(load.draining);
  report.set_max_model_len(options_.max_model_len);
  report.set_vocab_size(options_.vocab_size);
  report.set_max_waiting(static_cast<uint32_t>(load.max_waiting));
  *response = SerializeRawResponse(report);
  return Finished(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Release(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* raw,
                                                     grpc::ByteBuffer* response) {
  pb::ReleaseRequest request;
  absl::Status s = ParseRawRequest(*raw, &request);
  if (s.ok()) s = CheckKey(request.key());
  if (!s.ok()) return Finished(context, s);
  // The engine forgets the state on its own thread and finishes the call from
  // there; this callback thread returns at once. The call (so `response` and
  // `reactor`) stays alive until Finish, which the engine always calls
  // (exactly once, even when it stops).
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  options_.engine->Forget(
      {request.key().cache_salt(), request.key().conversation_id(), request.key().tenant()},
      [reactor, response](bool released) {
        pb::ReleaseResponse out;
        out.set_released(released);
        *response = SerializeRawResponse(out);
        reactor->Finish(grpc::Status::OK);
      });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Drain(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* raw,
                                                   grpc::ByteBuffer* response) {
  pb::DrainRequest request;
  if (absl::Status s = ParseRawRequest(*raw, &request); !s.ok()) return Finished(context, s);
  options_.engine->Drain();
  if (options_.on_drain) options_.on_drain();
  const engine::EngineLoad load = options_.engine->Load();
  pb::DrainResponse out;
  out.set_in_flight(static_cast<uint32_t>(load.num_running + load.num_waiting));
  HC_LOG(INFO) << "draining: " << out.in_flight() << " turns in flight";
  *response = SerializeRawResponse(out);
  return Finished(context, absl::OkStatus());
}

}  // namespace hc::worker
