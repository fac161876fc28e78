#include "router/service/worker_call.h"

namespace hc::router {

WorkerCall::WorkerCall(Listener* listener, std::shared_ptr<Worker> worker,
                       hybridcache::v1::ExecuteRequest request,
                       std::chrono::system_clock::time_point deadline)
    : listener_(listener), worker_(std::move(worker)), request_(std::move(request)) {
  ctx_.set_deadline(deadline);
}

void WorkerCall::Start() {
  worker_->stub()->async()->Execute(&ctx_, &request_, this);
  read_in_flight_.store(true);
  StartRead(&event_);
  AddHold();              // released by the owner (see the header)
  HC_TSAN_RELEASE(this);  // the call's construction and start happen before its reactions
  StartCall();
}

}  // namespace hc::router
