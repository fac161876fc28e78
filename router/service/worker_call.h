// One Execute stream from the router to a worker, driven by the turn that owns
// it (router/service/turn.cc).
//
// Lifetime: the call holds a gRPC hold from Start() until Release(), so gRPC
// cannot end it (OnDone) while its owner may still read or cancel. The owner
// reads one event at a time (Read() only after the previous read reported
// ok), cancels only before Release(), and releases exactly once: when a read
// reported the end of the stream, or when it stops the call without a read in
// flight. OnDone follows the release (and the end of any read in flight).
//
// Thread-safety: Start, Read, Cancel and Release are called by the owner's
// serial executor only, never concurrently. The reactions (OnReadDone,
// OnDone) run on gRPC threads and only forward to the Listener.
#ifndef HC_ROUTER_SERVICE_WORKER_CALL_H_
#define HC_ROUTER_SERVICE_WORKER_CALL_H_

#include <atomic>
#include <chrono>
#include <memory>

#include "common/logging.h"
#include "common/tsan_annotations.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"
#include "hybridcache/v1/worker.grpc.pb.h"
#include "router/routing/worker_pool.h"

namespace hc::router {

class WorkerCall final : public grpc::ClientReadReactor<hybridcache::v1::ExecuteEvent> {
 public:
  // Receives the call's reactions; must outlive the call's OnDone.
  class Listener {
   public:
    virtual ~Listener() = default;
    // A read finished: `ok` with a new event(), or the end of the stream.
    virtual void OnWorkerRead(WorkerCall* call, bool ok) = 0;
    // The call is over (after Release()); the last reaction.
    virtual void OnWorkerDone(WorkerCall* call, const grpc::Status& status) = 0;
  };

  WorkerCall(Listener* listener, std::shared_ptr<Worker> worker,
             hybridcache::v1::ExecuteRequest request,
             std::chrono::system_clock::time_point deadline);

  // Sends the request and issues the first read.
  void Start();
  void Read() {
    HC_CHECK(!read_in_flight_.exchange(true)) << "a second read while one is in flight";
    HC_TSAN_RELEASE(this);  // this read happens before its OnReadDone
    StartRead(&event_);
  }
  void Cancel() { ctx_.TryCancel(); }
  void Release() { RemoveHold(); }

  // The event of the last successful read; valid until the next Read().
  // gRPC writes event_ while a read is in flight, and ThreadSanitizer cannot
  // check that (the handoff is inside gRPC; tests/sanitizers/tsan.supp), so
  // the contract is checked here, in every build.
  const hybridcache::v1::ExecuteEvent& event() const {
    HC_CHECK(!read_in_flight_.load()) << "event() while a read is in flight";
    return event_;
  }
  Worker& worker() { return *worker_; }

  // The owner's bookkeeping, touched only by the owner's serial executor.
  bool reading = false;   // a read is in flight
  bool stopping = false;  // the owner wants no more events (cancelled or ended)
  bool released = false;  // Release() issued
  bool done = false;      // OnDone arrived

  void OnReadDone(bool ok) override {
    HC_TSAN_ACQUIRE(this);
    read_in_flight_.store(false);
    listener_->OnWorkerRead(this, ok);
  }
  void OnDone(const grpc::Status& status) override {
    HC_TSAN_ACQUIRE(this);
    listener_->OnWorkerDone(this, status);
  }

 private:
  Listener* const listener_;
  const std::shared_ptr<Worker> worker_;
  grpc::ClientContext ctx_;
  const hybridcache::v1::ExecuteRequest request_;
  hybridcache::v1::ExecuteEvent event_;
  std::atomic<bool> read_in_flight_{false};  // Start()/Read() to OnReadDone
};

}  // namespace hc::router

#endif  // HC_ROUTER_SERVICE_WORKER_CALL_H_
