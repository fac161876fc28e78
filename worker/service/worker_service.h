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
//
// Malformed input: the methods are gRPC raw callback methods (requests and
// responses are grpc::ByteBuffer, parsed and serialized with
// common/raw_proto.h) so that a request protobuf cannot parse is answered
// INVALID_ARGUMENT with a message instead of gRPC's UNIMPLEMENTED with none.
// Every field the worker relies on is checked before anything is queued
// (TurnFromProto); a rejected request changes nothing. The statuses each
// method answers are listed in proto/hybridcache/v1/worker.proto.
#ifndef HC_WORKER_SERVICE_WORKER_SERVICE_H_
#define HC_WORKER_SERVICE_WORKER_SERVICE_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/support/byte_buffer.h"
#include "hybridcache/v1/worker.grpc.pb.h"
#include "worker/engine/engine.h"

namespace hc::worker {

// Longest ExecuteRequest.request_id accepted (it is logged and kept while the
// turn runs).
inline constexpr size_t kMaxRequestIdBytes = 1024;

struct WorkerServiceOptions {
  std::string worker_id;
  engine::Engine* engine = nullptr;  // not owned; outlives the service
  int max_model_len = 0;             // context limit; requests are checked against it
  int vocab_size = 0;                // token ids must be below it
  // Called by Drain (e.g. to turn health NOT_SERVING). Optional.
  std::function<void()> on_drain;
};

// Checks the wire request against `options` (vocab_size, max_model_len) and
// converts it into the engine's turn. INVALID_ARGUMENT with a message naming
// the field: the key (common/request_checks.h), request_id longer than
// kMaxRequestIdBytes, an empty suffix, a suffix/history/stop token id >=
// vocab_size, new_round 0, sampling out of range. RESOURCE_EXHAUSTED when the
// context (history or expected state, plus suffix) leaves no room to generate
// within max_model_len. The engine re-checks what it relies on (Submit).
absl::StatusOr<engine::TurnSpec> TurnFromProto(const hybridcache::v1::ExecuteRequest& request,
                                               const WorkerServiceOptions& options);

using WorkerServiceBase = hybridcache::v1::WorkerService::WithRawCallbackMethod_Execute<
    hybridcache::v1::WorkerService::WithRawCallbackMethod_Load<
        hybridcache::v1::WorkerService::WithRawCallbackMethod_Release<
            hybridcache::v1::WorkerService::WithRawCallbackMethod_Drain<
                hybridcache::v1::WorkerService::Service>>>>;

class WorkerServiceImpl final : public WorkerServiceBase {
 public:
  explicit WorkerServiceImpl(WorkerServiceOptions options) : options_(std::move(options)) {}

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Execute(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Load(grpc::CallbackServerContext* context,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Release(grpc::CallbackServerContext* context,
                                    const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;

 private:
  const WorkerServiceOptions options_;
};

}  // namespace hc::worker

#endif  // HC_WORKER_SERVICE_WORKER_SERVICE_H_
