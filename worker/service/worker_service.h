// gRPC WorkerService on the callback API: one reactor per Execute stream. The
// reactor only converts messages and queues writes; the engine thread does the
// work and reports through a TurnObserver. A client cancel or an expired
// deadline reaches the engine as Cancel(request_id), within one step.
//
// Threading contract: no handler blocks a gRPC callback thread on the engine.
// Execute submits (or is refused: RESOURCE_EXHAUSTED when --max_waiting turns
// wait, UNAVAILABLE when draining) and returns; Release is finished from the
// engine's completion callback; Load and Drain only read or set engine state
// under its mutex, which the engine thread never holds across a step.
//
// Admission: the bound on waiting turns is enforced in Engine::Submit, the one
// place every turn enters (exact under races). There is deliberately no
// HTTP/2 MAX_CONCURRENT_STREAMS limit: the router multiplexes all its turns,
// Load probes and Releases over one connection per worker, and a stream limit
// would make the router's client queue them silently (a probe stuck behind
// turns marks the worker unhealthy) instead of getting a prompt
// RESOURCE_EXHAUSTED it can act on. Memory used by a flood of streams before
// they reach Submit is bounded by the server's gRPC ResourceQuota
// (ServerOptions::memory_quota_bytes, hc-worker --grpc_memory_quota).
#ifndef HC_WORKER_SERVICE_WORKER_SERVICE_H_
#define HC_WORKER_SERVICE_WORKER_SERVICE_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "hybridcache/v1/worker.grpc.pb.h"
#include "worker/engine/engine.h"

namespace hc::worker {

struct WorkerServiceOptions {
  std::string worker_id;
  engine::Engine* engine = nullptr;  // not owned; outlives the service
  int max_model_len = 0;
  int vocab_size = 0;
  // Called by Drain (e.g. to turn health NOT_SERVING). Optional.
  std::function<void()> on_drain;
};

// Converts the wire request into the engine's turn. INVALID_ARGUMENT with a
// readable message for malformed fields (the engine validates the rest).
absl::StatusOr<engine::TurnRequest> TurnFromProto(const hybridcache::v1::ExecuteRequest& request);

class WorkerServiceImpl final : public hybridcache::v1::WorkerService::CallbackService {
 public:
  explicit WorkerServiceImpl(WorkerServiceOptions options) : options_(std::move(options)) {}

  grpc::ServerWriteReactor<hybridcache::v1::ExecuteEvent>* Execute(
      grpc::CallbackServerContext* context, const hybridcache::v1::ExecuteRequest* request) override;
  grpc::ServerUnaryReactor* Load(grpc::CallbackServerContext* context,
                                 const hybridcache::v1::LoadRequest* request,
                                 hybridcache::v1::LoadReport* report) override;
  grpc::ServerUnaryReactor* Release(grpc::CallbackServerContext* context,
                                    const hybridcache::v1::ReleaseRequest* request,
                                    hybridcache::v1::ReleaseResponse* response) override;
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* context,
                                  const hybridcache::v1::DrainRequest* request,
                                  hybridcache::v1::DrainResponse* response) override;

 private:
  const WorkerServiceOptions options_;
};

}  // namespace hc::worker

#endif  // HC_WORKER_SERVICE_WORKER_SERVICE_H_
