// The OpenAI-compatible HTTP front door of hc-router (docs/http-api.md):
//   GET  /health                 200 when a worker is healthy, else 503
//   GET  /v1/models              the served model
//   POST /v1/chat/completions    streamed (SSE) or not
//   POST /v1/responses, GET /v1/responses/{id}
//
// Every turn runs through the router's own ChatService, as a client of it
// over an in-process gRPC channel: the ledger, leases, routing, retries,
// quotas, tenancy and stop strings are the gRPC API's, unchanged. The HTTP
// `Authorization: Bearer <key>` header becomes the call's `authorization`
// metadata. A client that disconnects cancels its call (nothing committed).
//
// Thread-safety: Start and the destructor are called by the owner; requests
// are served on the HTTP loop thread and gRPC callback threads.
#ifndef HC_ROUTER_HTTP_OPENAI_SERVER_H_
#define HC_ROUTER_HTTP_OPENAI_SERVER_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/http_server.h"
#include "grpcpp/channel.h"
#include "hybridcache/v1/chat.grpc.pb.h"
#include "router/routing/worker_pool.h"
#include "router/service/text_codec.h"

namespace hc::router::http {

struct OpenAiServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0 picks a free one
  // HTTPS when both are set.
  std::string tls_cert_file;
  std::string tls_key_file;
  // The name /v1/models lists and requests must name.
  std::string model_name = "hybridcache";
  // Larger request bodies are refused with 413.
  size_t max_body_bytes = 4 << 20;
  // Larger request heads (the header lines' bytes) are refused with 431.
  size_t max_headers_bytes = 64 << 10;
  // Deadline of one turn (504 past it).
  absl::Duration turn_timeout = absl::Minutes(10);
  // Secret that signs response ids (/v1/responses); empty: a random one per
  // process (ids then do not survive a restart or reach another router).
  std::string response_id_secret;
  // Conversations whose latest branch (after an edit or regenerate) this
  // router remembers; past it the oldest are forgotten (docs/http-api.md).
  size_t max_branches = 100000;
};

class OpenAiServer {
 public:
  // `channel` reaches the router's ChatService; `codec` gives token texts for
  // logprobs; `pool` answers /health. All must outlive the server.
  static absl::StatusOr<std::unique_ptr<OpenAiServer>> Start(OpenAiServerOptions options,
                                                             std::shared_ptr<grpc::Channel> channel,
                                                             const TextCodec* codec,
                                                             WorkerPool* pool);
  // Stops serving, cancels the calls in flight and waits until they ended.
  ~OpenAiServer();

  int port() const { return http_->port(); }

  // What a request needs from the server (shared with its exchanges).
  struct Shared {
    OpenAiServerOptions options;
    std::unique_ptr<hybridcache::v1::ChatService::Stub> stub;
    const TextCodec* codec;
    WorkerPool* pool;
    absl::Mutex mu;
    int live ABSL_GUARDED_BY(mu) = 0;  // exchanges not yet ended
    bool stopping ABSL_GUARDED_BY(mu) = false;
    // What this router committed last for a client's conversation: its
    // latest branch (the ledger conversation) and that branch's committed
    // messages, by digest, so that a turn that extends them needs no
    // GetConversation (docs/http-api.md).
    struct Branch {
      std::string ledger_id;
      uint64_t round = 0;
      uint32_t num_messages = 0;
      std::string digest;  // MessagesDigest of the committed messages
    };
    // (auth, salt, client conversation id) -> Branch.
    absl::flat_hash_map<std::string, Branch> branches ABSL_GUARDED_BY(mu);
    // Cancels every call in flight (at shutdown).
    absl::flat_hash_map<void*, std::function<void()>> cancels ABSL_GUARDED_BY(mu);
  };

 private:
  OpenAiServer() = default;
  std::shared_ptr<Shared> shared_;
  std::unique_ptr<HttpServer> http_;
};

}  // namespace hc::router::http

#endif  // HC_ROUTER_HTTP_OPENAI_SERVER_H_
