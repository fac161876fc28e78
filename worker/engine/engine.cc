#include "worker/engine/engine.h"

#include <algorithm>
#include <deque>
#include <list>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/intra_op.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/text/stop_limits.h"
#include "worker/engine/engine_impl.h"

namespace hc::engine::internal {

absl::Status EngineImpl::Validate(const TurnSpec& turn) const {
  if (turn.suffix.empty()) return absl::InvalidArgumentError("the turn adds no tokens");
  for (const auto* tokens : {&turn.suffix, &turn.history}) {
    for (const int32_t t : *tokens) {
      if (t < 0 || t >= vocab_) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", t, " is outside the vocabulary [0, ", vocab_, ")"));
      }
    }
  }
  if (turn.expected.has_value() ? turn.new_round <= turn.expected->round : turn.new_round == 0) {
    return absl::InvalidArgumentError("new_round must be greater than the committed round");
  }
  const int64_t history = std::max<int64_t>(turn.expected ? turn.expected->num_tokens : 0,
                                            static_cast<int64_t>(turn.history.size()));
  const int64_t context = history + static_cast<int64_t>(turn.suffix.size());
  if (context >= options_.max_model_len) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "context of ", context, " tokens leaves no room to generate within max_model_len ",
        options_.max_model_len));
  }
  if (turn.snapshot_at.has_value() && (*turn.snapshot_at < 1 || *turn.snapshot_at > context)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "snapshot_at ", *turn.snapshot_at, " is outside the turn's context [1, ", context, "]"));
  }
  const TurnSampling& s = turn.sampling;
  if (!(s.sampler.temperature >= 0.0f))
    return absl::InvalidArgumentError("temperature must be >= 0");
  if (!(s.sampler.top_p > 0.0f && s.sampler.top_p <= 1.0f)) {
    return absl::InvalidArgumentError("top_p must be in (0, 1]");
  }
  if (s.sampler.top_k < 0) return absl::InvalidArgumentError("top_k must be >= 0");
  if (s.max_tokens < 1) return absl::InvalidArgumentError("max_tokens must be >= 1");
  if (s.stop_strings.size() > static_cast<size_t>(kMaxStopStrings)) {
    return absl::InvalidArgumentError(absl::StrCat("the turn has ", s.stop_strings.size(),
                                                   " stop strings; at most ", kMaxStopStrings,
                                                   " are allowed"));
  }
  for (size_t i = 0; i < s.stop_strings.size(); ++i) {
    if (s.stop_strings[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("stop string ", i, " is empty"));
    }
    if (s.stop_strings[i].size() > kMaxStopStringBytes) {
      return absl::InvalidArgumentError(absl::StrCat("stop string ", i, " has ",
                                                     s.stop_strings[i].size(), " bytes; at most ",
                                                     kMaxStopStringBytes, " are allowed"));
    }
  }
  if (s.stop_token_ids.size() > static_cast<size_t>(kMaxStopTokenIds)) {
    return absl::InvalidArgumentError(absl::StrCat("the turn has ", s.stop_token_ids.size(),
                                                   " stop token ids; at most ", kMaxStopTokenIds,
                                                   " are allowed"));
  }
  if (!s.stop_strings.empty() && !options_.token_bytes) {
    return absl::InvalidArgumentError("stop strings need a tokenizer, and this worker has none");
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::Submit(TurnSpec req, std::shared_ptr<TurnObserver> observer) {
  HC_RETURN_IF_ERROR(Validate(req));
  auto turn = std::make_unique<EngineTurn>();
  // Built here, on the submitting thread: the engine thread only feeds it.
  if (!req.sampling.stop_strings.empty()) turn->stop = StopMatcher(req.sampling.stop_strings);
  std::optional<absl::Status> refused;  // counted in metrics outside the lock
  const char* reason = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (stop_) {
      refused = absl::UnavailableError("worker is shutting down");
      reason = "draining";
    } else if (draining_) {
      refused = absl::UnavailableError("worker is draining: it accepts no new turns");
      reason = "draining";
    } else if (active_keys_.contains(req.key)) {
      return absl::AbortedError("a turn of this conversation is already running on this worker");
    } else if (active_ids_.contains(req.request_id)) {
      return absl::AbortedError(absl::StrCat("request id ", req.request_id, " is already in use"));
    } else if (options_.max_waiting > 0 && num_waiting_ >= options_.max_waiting) {
      // Checked and counted under the same lock as the enqueue below, so
      // racing submitters cannot overshoot the bound. Nothing is recorded
      // for a refused turn: the conversation and request id stay free.
      refused = absl::ResourceExhaustedError(absl::StrCat("worker busy: ", num_waiting_,
                                                          " turns waiting (--max_waiting ",
                                                          options_.max_waiting, ")"));
      reason = "queue_full";
    } else {
      turn->sampler = Sampler(req.sampling.seed.has_value() ? *req.sampling.seed : rng_());
      turn->submitted = absl::Now();
      active_keys_.insert(req.key);
      active_ids_.insert(req.request_id);
      ++num_waiting_;
      turn->req = std::move(req);
      turn->observer = std::move(observer);
      inbox_.push_back(std::move(turn));
      return absl::OkStatus();
    }
  }
  if (options_.metrics) options_.metrics->OnRejected(reason);
  return *refused;
}

void EngineImpl::Cancel(const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  if (stop_) return;
  commands_.push_back({.kind = Command::kCancel, .request_id = request_id});
}

void EngineImpl::Forget(const ConversationKey& key, absl::AnyInvocable<void(bool) &&> done) {
  {
    absl::MutexLock lock(&mu_);
    if (!stop_) {
      // The engine thread runs every queued command before it exits, so
      // `done` is called even if Stop() comes next.
      commands_.push_back({.kind = Command::kForget, .key = key, .forgotten = std::move(done)});
      return;
    }
  }
  std::move(done)(false);
}

void EngineImpl::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stop_ = true;
    stopped_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void EngineImpl::Loop() {
  // Created, bound and destroyed on this thread, its owner (intra_op.h).
  std::optional<IntraOpPool> pool;
  if (options_.intra_op_threads > 1) pool.emplace(options_.intra_op_threads);
  const ScopedIntraOpPool bind(pool.has_value() ? &*pool : nullptr);
  for (;;) {
    std::deque<std::unique_ptr<EngineTurn>> incoming;
    std::vector<Command> commands;
    bool stop;
    {
      absl::MutexLock lock(&mu_);
      if (running_.empty() && waiting_.empty()) {
        mu_.Await(absl::Condition(this, &EngineImpl::HasInputLocked));
      }
      incoming.swap(inbox_);
      commands.swap(commands_);
      stop = stop_;
    }
    for (auto& t : incoming) waiting_.push_back(std::move(t));
    for (Command& cmd : commands) RunCommand(cmd);
    if (stop) {
      const absl::Status down = absl::UnavailableError("worker is shutting down");
      while (!running_.empty()) Fail(running_.front().get(), down);
      while (!waiting_.empty()) Fail(waiting_.front().get(), down);
      PublishLoad();
      return;
    }
    Step();
    PublishLoad();
  }
}

void EngineImpl::RunCommand(Command& cmd) {
  if (cmd.kind == Command::kForget) {
    const bool forgotten = options_.cache->Forget(cmd.key);
    std::move(cmd.forgotten)(forgotten);
    return;
  }
  const auto matches = [&](const std::unique_ptr<EngineTurn>& t) {
    return t->req.request_id == cmd.request_id;
  };
  const absl::Status cancelled = absl::CancelledError("the turn was cancelled");
  if (auto it = std::find_if(running_.begin(), running_.end(), matches); it != running_.end()) {
    Fail(it->get(), cancelled);
  } else if (auto w = std::find_if(waiting_.begin(), waiting_.end(), matches);
             w != waiting_.end()) {
    Fail(w->get(), cancelled);
  }
}

}  // namespace hc::engine::internal

namespace hc::engine {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options) {
  if (options.model == nullptr || options.cache == nullptr) {
    return absl::InvalidArgumentError("the engine needs a model and a cache");
  }
  if (options.max_batch_tokens <= 0 || options.max_running <= 0 || options.max_model_len <= 1) {
    return absl::InvalidArgumentError("engine limits must be positive");
  }
  if (options.max_waiting < 0) {
    return absl::InvalidArgumentError("max_waiting must be >= 0 (0: unbounded)");
  }
  if (options.intra_op_threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("intra_op_threads must be >= 1, got ", options.intra_op_threads));
  }
  return std::unique_ptr<Engine>(new internal::EngineImpl(options));
}

}  // namespace hc::engine
