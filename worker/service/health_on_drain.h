// Makes the worker's gRPC health follow its Drain RPC, whichever comes first:
// the server answers RPCs as soon as GrpcServer::Start has built it, before
// main holds the GrpcServer (and Start itself sets SERVING last), so a Drain
// can arrive before there is a server to turn NOT_SERVING. The drain is
// remembered and applied on Attach.
//
// Thread-safety: every method may be called from any thread. Drain and Attach
// are serialised, so once both ran the health is NOT_SERVING whatever their
// order.
#ifndef HC_WORKER_SERVICE_HEALTH_ON_DRAIN_H_
#define HC_WORKER_SERVICE_HEALTH_ON_DRAIN_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/server.h"

namespace hc::worker {

class HealthOnDrain {
 public:
  // The worker drains (WorkerServiceOptions::on_drain): NOT_SERVING now if a
  // server is attached, else as soon as one is.
  void Drain();
  // Connects the server (not owned) once GrpcServer::Start returned; applies
  // a Drain that came first. Call Detach before the server is destroyed.
  void Attach(GrpcServer* server);
  void Detach();

  bool drained() const;

 private:
  mutable absl::Mutex mu_;
  GrpcServer* server_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool drained_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace hc::worker

#endif  // HC_WORKER_SERVICE_HEALTH_ON_DRAIN_H_
