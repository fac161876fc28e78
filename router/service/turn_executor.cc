// The turn's serial executor (see turn.cc): every reaction posts an event;
// whichever thread finds the turn idle applies the events one at a time and
// runs the actions each decides, outside the mutex.
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/raw_proto.h"
#include "common/tsan_annotations.h"
#include "router/service/turn_reactor.h"

namespace hc::router::turn_internal {

ChatTurn::ChatTurn(Deps* deps, grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* raw,
                   absl::StatusOr<Caller> caller)
    : deps_(deps),
      ctx_(ctx),
      req_(&request_),
      caller_(std::move(caller)),
      start_(absl::Now()),
      in_process_(ctx->client_metadata().count(kInProcessClientMetadata) > 0) {
  parsed_ = ParseRawRequest(*raw, &request_);
  {
    absl::MutexLock lock(&deps_->live_mu);
    ++deps_->live_calls;
  }
  Post(Event{EventKind::kStart});
}

ChatTurn::~ChatTurn() {
  absl::MutexLock lock(&deps_->live_mu);
  --deps_->live_calls;
}

void ChatTurn::Post(Event event) {
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

void ChatTurn::Run() {
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

}  // namespace hc::router::turn_internal
