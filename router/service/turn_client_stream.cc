// The turn's client stream (see turn.cc): events queued for the client,
// written one write at a time, and the stream's Finish.
#include <string>
#include <utility>
#include <vector>

#include "common/raw_proto.h"
#include "router/service/turn_reactor.h"
#include "router/service/turn_requests.h"

namespace hc::router::turn_internal {

void ChatTurn::OnWriteDoneEvent(bool ok, std::vector<Action>& out) {
  writing_ = false;
  if (!ok) {
    // The client is gone: nothing more reaches it.
    queue_.clear();
    Abort(grpc::Status(grpc::StatusCode::CANCELLED, "client stream closed"), out);
  }
  // Pump (after every event) writes what is queued, or finishes.
}

void ChatTurn::Enqueue(v1::CompleteEvent event) { queue_.push_back(std::move(event)); }

void ChatTurn::Pump(std::vector<Action>& out) {
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
  // gRPC's in-process transport (the router's own HTTP front door) can lose
  // the message of a write-and-finish; there the status follows separately
  // (kInProcessClientMetadata).
  if (state_ == State::kFinishing && queue_.empty() && final_->ok() && !in_process_) {
    state_ = State::kDone;
    out.push_back(
        [this] { StartWriteAndFinish(&write_buf_, grpc::WriteOptions(), grpc::Status::OK); });
    return;
  }
  out.push_back([this] { StartWrite(&write_buf_); });
  MaybeRead(out);  // the queue shrank: below its bound again
}

void ChatTurn::SendChunk(const ReplyStream::Chunk& c, std::vector<Action>& out) {
  if (c.empty()) return;
  v1::CompleteEvent e;
  auto* chunk = e.mutable_chunk();
  chunk->mutable_token_ids()->Add(c.token_ids.begin(), c.token_ids.end());
  chunk->set_text(c.text);
  chunk->mutable_logprobs()->Add(c.logprobs.begin(), c.logprobs.end());
  for (const v1::TopLogprobs& t : c.top_logprobs) *chunk->add_top_logprobs() = t;
  Enqueue(std::move(e));
}

void ChatTurn::SendStarted(std::vector<Action>& out) {
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

uint32_t ChatTurn::PromptTokens() const {
  return have_started_ ? started_.prompt_tokens()
                       : static_cast<uint32_t>(rec_.tokens.size() + suffix_.tokens.size());
}

}  // namespace hc::router::turn_internal
