#include "tests/unit/router/service/fake_worker.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/text/stop_matcher.h"
#include "common/token_hash.h"

namespace hc::router::testing {
namespace v1 = hybridcache::v1;

namespace {
// Length-prefixed parts: unambiguous for any bytes.
std::string KeyOf(const v1::ConversationKey& k) {
  return absl::StrCat(k.tenant().size(), ":", k.tenant(), k.cache_salt().size(), ":",
                      k.cache_salt(), k.conversation_id());
}
}  // namespace

void FakeWorker::Serve() {
  ServerOptions o;
  o.drain_timeout = absl::Seconds(1);
  auto s = GrpcServer::Start(o, {{this, v1::WorkerService::service_full_name()}});
  HC_CHECK(s.ok()) << s.status();
  server_ = std::move(s).value();
}

std::vector<uint32_t> FakeWorker::Reply(std::span<const uint32_t> context) const {
  const uint64_t h = TokenHash(context);
  std::vector<uint32_t> out;
  for (int i = 0; i < options_.reply_letters; ++i) out.push_back('a' + MixHash64(h + i) % 26);
  if (options_.emoji) {
    for (uint32_t b : {0xF0u, 0x9Fu, 0x98u, 0x80u}) out.push_back(b);  // U+1F600
  }
  out.push_back(options_.eos);
  return out;
}

void FakeWorker::ForgetAll() {
  absl::MutexLock lock(&mu_);
  states_.clear();
}
void FakeWorker::SetLoadFails(bool fails) {
  absl::MutexLock lock(&mu_);
  load_fails_ = fails;
}
void FakeWorker::BlockNext(int tokens_before) {
  BlockNext(tokens_before, std::make_shared<absl::Notification>());
}
void FakeWorker::BlockNext(int tokens_before, std::shared_ptr<absl::Notification> entered) {
  absl::MutexLock lock(&mu_);
  block_next_ = tokens_before;
  entered_ = std::move(entered);
  unblock_ = std::make_unique<absl::Notification>();
}
void FakeWorker::FailNext(grpc::StatusCode code, int times) {
  absl::MutexLock lock(&mu_);
  fail_code_ = code;
  fail_times_ = times;
}
std::vector<v1::ExecuteRequest> FakeWorker::requests() {
  absl::MutexLock lock(&mu_);
  return requests_;
}
std::vector<std::string> FakeWorker::released() {
  absl::MutexLock lock(&mu_);
  return released_;
}
bool FakeWorker::saw_cancel() {
  absl::MutexLock lock(&mu_);
  return saw_cancel_;
}
bool FakeWorker::AwaitCancel(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&saw_cancel_), timeout);
}
std::chrono::system_clock::time_point FakeWorker::last_deadline() {
  absl::MutexLock lock(&mu_);
  return last_deadline_;
}

grpc::Status FakeWorker::Execute(grpc::ServerContext* ctx, const v1::ExecuteRequest* req,
                                 grpc::ServerWriter<v1::ExecuteEvent>* writer) {
  const std::string key = KeyOf(req->key());
  std::vector<uint32_t> context;
  uint32_t cached = 0;
  int block_at = -1;
  absl::Notification* entered;
  absl::Notification* unblock;
  {
    absl::MutexLock lock(&mu_);
    requests_.push_back(*req);
    last_deadline_ = ctx->deadline();
    if (fail_times_ > 0) {
      --fail_times_;
      return grpc::Status(fail_code_, "fake failure");
    }
    block_at = block_next_;
    block_next_ = -1;
    entered = entered_.get();
    unblock = unblock_.get();
    auto it = states_.find(key);
    bool matched = false;
    if (req->has_expected() && it != states_.end()) {
      const State& s = it->second;
      matched = s.round == req->expected().round() &&
                s.tokens.size() == req->expected().num_tokens() &&
                TokenHash(std::span<const uint32_t>(s.tokens)) == req->expected().prefix_hash();
    }
    if (matched) {
      context = it->second.tokens;
      cached = static_cast<uint32_t>(context.size());
    } else if (req->has_expected() && !req->has_history()) {
      v1::ExecuteEvent e;
      e.mutable_state_missing()->set_reason(it == states_.end() ? "unknown conversation"
                                                                : "stale round");
      writer->Write(e);
      return grpc::Status::OK;
    } else if (req->has_history()) {
      context.assign(req->history_token_ids().begin(), req->history_token_ids().end());
    }
  }
  context.insert(context.end(), req->suffix_token_ids().begin(), req->suffix_token_ids().end());
  v1::ExecuteEvent started;
  started.mutable_started()->set_worker_id(options_.id);
  started.mutable_started()->set_prompt_tokens(static_cast<uint32_t>(context.size()));
  started.mutable_started()->set_cached_tokens(cached);
  writer->Write(started);

  std::vector<uint32_t> reply = Reply(context);
  std::string finish = "stop";
  if (req->sampling().has_max_tokens() && reply.size() > req->sampling().max_tokens()) {
    reply.resize(req->sampling().max_tokens());
    finish = "length";
  }
  // Stop strings, as a worker matches them: on the tokens' bytes (ByteTextCodec
  // ids: a byte each, special tokens none); the reply ends with the token in
  // which the first stop string completes.
  std::optional<v1::StopStringCut> cut;
  {
    const std::vector<std::string> stops(req->sampling().stop().begin(),
                                         req->sampling().stop().end());
    StopMatcher matcher(stops);
    std::vector<int64_t> ends;
    for (size_t i = 0; i < reply.size() && !cut.has_value(); ++i) {
      const std::string bytes = reply[i] < 256 && reply[i] != options_.eos
                                    ? std::string(1, static_cast<char>(reply[i]))
                                    : "";
      ends.push_back(matcher.offset() + static_cast<int64_t>(bytes.size()));
      if (const auto m = matcher.Feed(bytes)) {
        cut.emplace();
        cut->set_reply_bytes(static_cast<uint32_t>(m->begin));
        cut->set_tokens_before(static_cast<uint32_t>(
            std::upper_bound(ends.begin(), ends.end(), m->begin) - ends.begin()));
        reply.resize(i + 1);
        finish = "stop";
      }
    }
  }
  for (size_t i = 0; i < reply.size(); ++i) {
    if (static_cast<int>(i) == block_at) {
      entered->Notify();
      while (!unblock->WaitForNotificationWithTimeout(absl::Milliseconds(2))) {
        if (ctx->IsCancelled()) {
          absl::MutexLock lock(&mu_);
          saw_cancel_ = true;
          return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
        }
      }
    }
    v1::ExecuteEvent e;
    e.mutable_tokens()->add_token_ids(reply[i]);
    e.mutable_tokens()->add_logprobs(-0.5f);
    if (!writer->Write(e)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
  }
  // The last sampled token is not computed yet: the committed state stops
  // before it. A stop string that began before the last token leaves the
  // state the turn started from (the cached one, or none).
  std::vector<uint32_t> committed = context;
  committed.insert(committed.end(), reply.begin(), reply.end() - 1);
  if (cut.has_value() && cut->tokens_before() + 1 < reply.size()) {
    committed.assign(context.begin(), context.begin() + cached);
  }
  v1::ExecuteEvent done;
  auto* c = done.mutable_committed();
  c->mutable_state()->set_round(req->new_round());
  c->mutable_state()->set_num_tokens(static_cast<uint32_t>(committed.size()));
  c->mutable_state()->set_prefix_hash(TokenHash(std::span<const uint32_t>(committed)));
  c->set_finish_reason(finish);
  c->set_completion_tokens(static_cast<uint32_t>(reply.size()));
  if (cut.has_value()) *c->mutable_stop_string() = *cut;
  {
    absl::MutexLock lock(&mu_);
    if (committed.empty()) {
      states_.erase(key);
    } else {
      states_[key] = State{req->new_round(), std::move(committed)};
    }
  }
  writer->Write(done);
  return grpc::Status::OK;
}

grpc::Status FakeWorker::Load(grpc::ServerContext*, const v1::LoadRequest*,
                              v1::LoadReport* report) {
  absl::MutexLock lock(&mu_);
  if (load_fails_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake outage");
  report->set_worker_id(options_.id);
  report->set_free_kv_blocks(100);
  report->set_total_kv_blocks(100);
  report->set_max_model_len(options_.max_model_len);
  report->set_vocab_size(options_.vocab_size);
  report->set_committed_conversations(static_cast<uint32_t>(states_.size()));
  return grpc::Status::OK;
}

grpc::Status FakeWorker::Release(grpc::ServerContext*, const v1::ReleaseRequest* req,
                                 v1::ReleaseResponse* resp) {
  absl::MutexLock lock(&mu_);
  released_.push_back(req->key().conversation_id());
  resp->set_released(states_.erase(KeyOf(req->key())) > 0);
  return grpc::Status::OK;
}

}  // namespace hc::router::testing
