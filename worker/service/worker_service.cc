#include "worker/service/worker_service.h"

#include <deque>
#include <memory>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace hc::worker {
namespace {

namespace pb = hybridcache::v1;

constexpr size_t kMaxKeyBytes = 4096;

// Writes one Execute stream. Events arrive from the engine thread (through
// Observer) and leave one write at a time; consecutive token events are
// merged while a write is in flight, so a slow client costs one message, not
// one per token.
class ExecuteReactor final : public grpc::ServerWriteReactor<pb::ExecuteEvent> {
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
    void OnTokens(std::span<const int32_t> ids, std::span<const float> logprobs) override {
      pb::ExecuteEvent ev;
      auto* batch = ev.mutable_tokens();
      for (const int32_t id : ids) batch->add_token_ids(static_cast<uint32_t>(id));
      for (const float lp : logprobs) batch->add_logprobs(lp);
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
      absl::MutexLock lock(&mu_);
      if (reactor_ != nullptr) reactor_->Enqueue(std::move(ev), std::move(final));
    }
    const std::string worker_id_;
    absl::Mutex mu_;
    ExecuteReactor* reactor_ ABSL_GUARDED_BY(mu_);
  };

  ExecuteReactor(const WorkerServiceOptions& options, grpc::CallbackServerContext* context,
                 const pb::ExecuteRequest& request)
      : options_(options), observer_(std::make_shared<Observer>(this, options.worker_id)) {
    absl::StatusOr<engine::TurnRequest> turn = TurnFromProto(request);
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
    Enqueue(std::nullopt, ToGrpcStatus(turn.status()));
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      // The client is gone: drop what is queued; OnCancel tells the engine.
      queue_.clear();
      if (!finishing_) {
        finishing_ = true;
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke"));
      }
      return;
    }
    PumpLocked();
  }

  void OnCancel() override {
    if (!request_id_.empty()) options_.engine->Cancel(request_id_);
  }

  void OnDone() override {
    observer_->Detach();
    delete this;
  }

 private:
  void Enqueue(std::optional<pb::ExecuteEvent> ev, std::optional<grpc::Status> final) {
    absl::MutexLock lock(&mu_);
    if (finishing_) return;
    if (ev.has_value()) {
      // Merge into a queued token batch rather than queueing a new message.
      if (ev->has_tokens() && !queue_.empty() && queue_.back().has_tokens()) {
        auto* tail = queue_.back().mutable_tokens();
        tail->mutable_token_ids()->MergeFrom(ev->tokens().token_ids());
        tail->mutable_logprobs()->MergeFrom(ev->tokens().logprobs());
      } else {
        queue_.push_back(std::move(*ev));
      }
    }
    if (final.has_value()) final_ = std::move(final);
    PumpLocked();
  }

  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finishing_) return;
    if (!queue_.empty()) {
      current_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      StartWrite(&current_);
      return;
    }
    if (final_.has_value()) {
      finishing_ = true;
      Finish(*final_);
    }
  }

  const WorkerServiceOptions& options_;
  const std::shared_ptr<Observer> observer_;
  std::string request_id_;
  absl::Mutex mu_;
  std::deque<pb::ExecuteEvent> queue_ ABSL_GUARDED_BY(mu_);
  pb::ExecuteEvent current_ ABSL_GUARDED_BY(mu_);  // the message being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> final_ ABSL_GUARDED_BY(mu_);
};

absl::Status CheckKey(const pb::ConversationKey& key) {
  if (key.conversation_id().empty()) return absl::InvalidArgumentError("conversation_id is empty");
  if (key.conversation_id().size() + key.cache_salt().size() + key.tenant().size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError("conversation key is too long");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<engine::TurnRequest> TurnFromProto(const pb::ExecuteRequest& request) {
  HC_RETURN_IF_ERROR(CheckKey(request.key()));
  engine::TurnRequest turn;
  turn.key = {request.key().cache_salt(), request.key().conversation_id(), request.key().tenant()};
  turn.request_id = request.request_id().empty()
                        ? absl::StrCat(request.key().cache_salt(), "/", request.key().conversation_id(),
                                       "/", request.new_round())
                        : request.request_id();
  if (request.has_expected()) {
    turn.expected = cache::RoundStamp{.round = request.expected().round(),
                                      .num_tokens = request.expected().num_tokens(),
                                      .token_hash = request.expected().prefix_hash()};
  }
  turn.new_round = request.new_round();
  const auto to_i32 = [](const auto& ids, std::vector<int32_t>& out) -> absl::Status {
    out.reserve(ids.size());
    for (const uint32_t id : ids) {
      if (id > static_cast<uint32_t>(INT32_MAX)) {
        return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is out of range"));
      }
      out.push_back(static_cast<int32_t>(id));
    }
    return absl::OkStatus();
  };
  HC_RETURN_IF_ERROR(to_i32(request.suffix_token_ids(), turn.suffix));
  turn.has_history = request.has_history();
  HC_RETURN_IF_ERROR(to_i32(request.history_token_ids(), turn.history));

  const pb::SamplingParams& s = request.sampling();
  engine::TurnSampling& out = turn.sampling;
  out.sampler.temperature = s.has_temperature() ? s.temperature() : 1.0f;
  out.sampler.top_p = s.has_top_p() ? s.top_p() : 1.0f;
  if (s.top_k() > static_cast<uint32_t>(INT32_MAX)) return absl::InvalidArgumentError("top_k is too large");
  out.sampler.top_k = static_cast<int>(s.top_k());
  if (s.has_max_tokens()) {
    if (s.max_tokens() == 0) return absl::InvalidArgumentError("max_tokens must be >= 1");
    out.max_tokens = static_cast<int>(std::min<uint32_t>(s.max_tokens(), INT32_MAX));
  }
  if (s.has_seed()) out.seed = s.seed();
  HC_RETURN_IF_ERROR(to_i32(s.stop_token_ids(), out.stop_token_ids));
  out.stop_strings.assign(s.stop().begin(), s.stop().end());
  out.ignore_eos = s.ignore_eos();
  out.logprobs = s.logprobs();
  return turn;
}

grpc::ServerWriteReactor<pb::ExecuteEvent>* WorkerServiceImpl::Execute(
    grpc::CallbackServerContext* context, const pb::ExecuteRequest* request) {
  return new ExecuteReactor(options_, context, *request);
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Load(grpc::CallbackServerContext* context,
                                                  const pb::LoadRequest*, pb::LoadReport* report) {
  const engine::EngineLoad load = options_.engine->Load();
  report->set_worker_id(options_.worker_id);
  report->set_num_running(load.num_running);
  report->set_num_waiting(load.num_waiting);
  report->set_free_kv_blocks(static_cast<uint32_t>(load.cache.kv_blocks_free));
  report->set_total_kv_blocks(static_cast<uint32_t>(load.cache.kv_blocks_total));
  report->set_free_mamba_slots(static_cast<uint32_t>(load.cache.mamba_slots_free));
  report->set_total_mamba_slots(static_cast<uint32_t>(load.cache.mamba_slots_total));
  report->set_committed_conversations(static_cast<uint32_t>(load.cache.conversations));
  report->set_draining(load.draining);
  report->set_max_model_len(options_.max_model_len);
  report->set_vocab_size(options_.vocab_size);
  report->set_max_waiting(static_cast<uint32_t>(load.max_waiting));
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Release(grpc::CallbackServerContext* context,
                                                     const pb::ReleaseRequest* request,
                                                     pb::ReleaseResponse* response) {
  auto* reactor = context->DefaultReactor();
  const absl::Status key = CheckKey(request->key());
  if (!key.ok()) {
    reactor->Finish(ToGrpcStatus(key));
    return reactor;
  }
  // The engine drops the state on its own thread and finishes the call from
  // there; this callback thread returns at once. The call (so `response` and
  // `reactor`) stays alive until Finish, which the engine always calls
  // (exactly once, even when it stops).
  options_.engine->Release({request->key().cache_salt(), request->key().conversation_id(),
                            request->key().tenant()},
                           [reactor, response](bool released) {
                             response->set_released(released);
                             reactor->Finish(grpc::Status::OK);
                           });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Drain(grpc::CallbackServerContext* context,
                                                   const pb::DrainRequest*, pb::DrainResponse* response) {
  options_.engine->Drain();
  if (options_.on_drain) options_.on_drain();
  const engine::EngineLoad load = options_.engine->Load();
  response->set_in_flight(static_cast<uint32_t>(load.num_running + load.num_waiting));
  HC_LOG(INFO) << "draining: " << response->in_flight() << " turns in flight";
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace hc::worker
