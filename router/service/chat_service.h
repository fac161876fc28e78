// ChatService on the gRPC callback API: one reactor per Complete stream that
// takes the conversation's lease, tokenizes the suffix, routes the turn,
// streams the worker's tokens through and commits to the ledger.
//
// A turn (router/service/turn.cc has the state table): validate -> admission
// (RESOURCE_EXHAUSTED past max_inflight_turns) -> lease (ABORTED when held) ->
// expected_round (FAILED_PRECONDITION) -> tokenize -> context check
// (RESOURCE_EXHAUSTED) -> route (sticky / placed / failover) -> Execute on the
// worker: sticky sends the worker's committed state as `expected` and the
// tokens after it; otherwise the full ledger history. StateMissing resends
// with the history to the same worker. UNAVAILABLE, ABORTED and
// RESOURCE_EXHAUSTED from a worker are retried (bounded, with backoff) until
// the first token reaches the client; TurnStarted is held back until then so a
// retry stays invisible. The lease is renewed while the turn runs. On the
// worker's CommitReport the ledger commits round N+1 and the lease is
// released; any failure or cancellation releases the lease and leaves the
// ledger as it was. The client's deadline and cancellation carry over to the
// worker call. Ledger I/O never blocks a gRPC thread (ledger.h).
//
// Tenants: with ChatServiceOptions::api_keys every call must carry
// `authorization: Bearer <key>` metadata naming a key of the keys file
// (UNAUTHENTICATED otherwise) and use a cache_salt its rules allow
// (PERMISSION_DENIED otherwise); the key's tenant is part of every ledger and
// worker cache key, so tenants never see each other's conversations, and
// with ChatServiceOptions::quotas its concurrent turns and tokens per minute
// are limited (router/tenancy/quotas.h). Only admin keys see worker ids.
// Without api_keys nobody is authenticated: every caller is the empty tenant
// with admin rights, as before keys existed.
//
// Thread-safety: the service is thread-safe; it does not own the ledger, pool,
// codec, metrics, keys or quotas, which must outlive it.
#ifndef HC_ROUTER_SERVICE_CHAT_SERVICE_H_
#define HC_ROUTER_SERVICE_CHAT_SERVICE_H_

#include <atomic>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/support/byte_buffer.h"
#include "hybridcache/v1/chat.grpc.pb.h"
#include "router/ledger/ledger.h"
#include "router/routing/worker_pool.h"
#include "router/service/router_metrics.h"
#include "router/service/text_codec.h"
#include "router/service/work_pool.h"
#include "router/tenancy/api_keys.h"
#include "router/tenancy/quotas.h"

namespace hc::router {

// Metadata key of calls made over GrpcServer::InProcessChannel (the HTTP front
// door): gRPC's in-process transport can lose the message of a
// write-and-finish, so a turn sends such a client its last event and its
// status separately. Harmless from any other client.
inline constexpr char kInProcessClientMetadata[] = "hc-in-process";

struct ChatServiceOptions {
  // Lease per turn, renewed every lease_ttl / 3 while the turn runs; a crashed
  // router's conversations are free again after at most lease_ttl.
  absl::Duration lease_ttl = absl::Seconds(30);
  // Turns in flight in this router (admission bound); past it a turn is
  // refused with RESOURCE_EXHAUSTED. 0: unbounded.
  int64_t max_inflight_turns = 1024;
  // Threads that tokenize turns (off the gRPC threads); 0: one per core.
  int work_threads = 0;
  // Context limit; 0 takes the smallest max_model_len the workers report.
  uint32_t max_model_len = 0;
  // Attempts per turn (including the first) while no token has reached the
  // client, on UNAVAILABLE, ABORTED or RESOURCE_EXHAUSTED from a worker; and
  // the first backoff (doubling).
  int max_attempts = 3;
  absl::Duration retry_backoff = absl::Milliseconds(20);
  // Lease holder prefix; unique per router process.
  std::string router_id = "router";
  // API keys (see above); null: no authentication.
  const ApiKeyStore* api_keys = nullptr;
  // Per-tenant quotas of turns; null: none. Used only for non-empty tenants.
  TenantQuotas* quotas = nullptr;
};

// The caller that a call's metadata authenticates (see above).
absl::StatusOr<Caller> AuthenticateCall(const ApiKeyStore* keys,
                                        const grpc::CallbackServerContext& context);

// The service's methods take and return raw bytes (gRPC's "raw" callback
// methods) so that a request protobuf cannot parse (truncated, or a string
// field that is not UTF-8) is answered INVALID_ARGUMENT with a message: with
// typed callback methods gRPC answers such a request UNIMPLEMENTED with no
// message, before any of our code runs. Requests are parsed with
// hc::ParseRawRequest (common/raw_proto.h); the wire format is the same.
using ChatServiceBase = hybridcache::v1::ChatService::WithRawCallbackMethod_Complete<
    hybridcache::v1::ChatService::WithRawCallbackMethod_GetConversation<
        hybridcache::v1::ChatService::WithRawCallbackMethod_DeleteConversation<
            hybridcache::v1::ChatService::Service>>>;

class ChatServiceImpl final : public ChatServiceBase {
 public:
  ChatServiceImpl(ChatServiceOptions options, ConversationLedger* ledger, WorkerPool* pool,
                  const TextCodec* codec, RouterMetrics* metrics);
  // Waits until every turn is gone: a turn outlives its client stream until
  // its worker call has ended, and it uses the ledger, pool and metrics.
  ~ChatServiceImpl() override;

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Complete(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* GetConversation(grpc::CallbackServerContext* context,
                                            const grpc::ByteBuffer* request,
                                            grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* DeleteConversation(grpc::CallbackServerContext* context,
                                               const grpc::ByteBuffer* request,
                                               grpc::ByteBuffer* response) override;

  // What a turn needs from the service (shared by its reactors).
  struct Deps {
    ChatServiceOptions options;
    ConversationLedger* ledger;
    WorkerPool* pool;
    const TextCodec* codec;
    RouterMetrics* metrics;
    WorkPool* work_pool;
    std::atomic<uint64_t> next_turn{0};
    std::atomic<int64_t> active_turns{0};  // admitted turns not yet concluded
    absl::Mutex live_mu;
    // Turns not yet deleted plus Get/Delete calls not yet finished.
    int live_calls ABSL_GUARDED_BY(live_mu) = 0;
  };

 private:
  // Get/Delete calls count as live until their last callback has run.
  void CallStarted();
  void CallEnded();
  // Counts a Get/Delete in the request metrics and finishes it.
  void FinishUnary(grpc::ServerUnaryReactor* reactor, absl::Time start, const absl::Status& status);
  // AuthenticateCall and CheckSalt for Get/Delete, counting refusals.
  absl::StatusOr<Caller> Authenticate(const grpc::CallbackServerContext& context);
  absl::Status CheckCallerSalt(const Caller& caller, std::string_view salt);

  WorkPool work_pool_;  // destroyed after deps_' turns are gone (see ~ChatServiceImpl)
  Deps deps_;
};

}  // namespace hc::router

#endif  // HC_ROUTER_SERVICE_CHAT_SERVICE_H_
