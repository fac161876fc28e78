#include "worker/service/health_on_drain.h"

namespace hc::worker {

void HealthOnDrain::Drain() {
  absl::MutexLock lock(&mu_);
  drained_ = true;
  if (server_ != nullptr) server_->SetServing(false);
}

void HealthOnDrain::Attach(GrpcServer* server) {
  absl::MutexLock lock(&mu_);
  server_ = server;
  // After Start's SERVING: a Drain that came in between wins.
  if (drained_ && server_ != nullptr) server_->SetServing(false);
}

void HealthOnDrain::Detach() {
  absl::MutexLock lock(&mu_);
  server_ = nullptr;
}

bool HealthOnDrain::drained() const {
  absl::MutexLock lock(&mu_);
  return drained_;
}

}  // namespace hc::worker
