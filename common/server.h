// gRPC server bootstrap shared by the router and the worker: standard health
// service (grpc.health.v1), optional server reflection, TLS (common/tls.h),
// an optional plaintext health-only port, keepalive, message-size limits, and
// graceful shutdown (health NOT_SERVING, refuse new calls, drain in-flight
// calls up to a deadline, then cancel what remains).
#ifndef HC_COMMON_SERVER_H_
#define HC_COMMON_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/impl/codegen/service_type.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"

namespace hc {

// Health service name that reports SERVING from Start until Shutdown, whatever
// SetServing says: "the process is up and its gRPC server answers". Liveness
// and startup probes check it, readiness checks "" (which a router keeps
// NOT_SERVING until it has seen a healthy worker, and every server turns
// NOT_SERVING while it drains), so a pod that is alive but cannot serve yet
// is taken out of its Service instead of being restarted.
inline constexpr char kLivenessService[] = "liveness";

struct ServerOptions {
  std::string host = "127.0.0.1";  // servers bind to loopback unless told otherwise
  int port = 0;                    // 0 picks a free port
  int max_message_bytes = 64 << 20;
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  absl::Duration drain_timeout = absl::Seconds(30);
  // Health of "" and every bound service once Start returns. false:
  // NOT_SERVING until SetServing(true), e.g. a router that has not yet seen a
  // healthy worker (readiness). gRPC's health service reports "" SERVING from
  // the moment it exists, so for the instant between the port opening and
  // Start returning a Check may still read SERVING.
  bool start_serving = true;
  // gRPC ResourceQuota over the server's transport buffers and calls: under
  // pressure gRPC shrinks flow-control windows and, when exhausted, cancels
  // streams rather than letting a flood of calls grow memory without bound.
  // 0: no quota (gRPC's default).
  int64_t memory_quota_bytes = 0;
  // Credentials of `port` (common/tls.h MakeServerCredentials); null:
  // plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // grpc.reflection.v1alpha on `port`. Off unless asked for: it describes
  // every method and message to anyone who can connect.
  bool reflection = false;
  // >= 0: a second server, plaintext, on this port of `host` (0 picks a free
  // one) that serves grpc.health.v1 and nothing else, with the same statuses
  // as `port`. For probes that cannot speak TLS or present a client
  // certificate (the kubelet's gRPC probes) while `port` requires them.
  // -1: none.
  int health_port = -1;
};

class GrpcServer {
 public:
  // A service (not owned; it must outlive the server) and its full name
  // (`Stub::service_full_name()`), under which health reports it.
  struct Binding {
    grpc::Service* service;
    std::string name;
  };

  // Builds and starts a server; health reports SERVING (NOT_SERVING without
  // options.start_serving) for "" and for every binding's name, and SERVING
  // for kLivenessService. UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(const ServerOptions& options,
                                                           const std::vector<Binding>& services);
  ~GrpcServer();  // Shuts down (gracefully) if still running.

  int port() const { return port_; }
  std::string address() const;  // "host:port"
  // The plaintext health-only port; -1 without options.health_port.
  int health_port() const { return health_port_; }

  // A channel to this server's services inside the process: no network, no
  // TLS, the same handlers (the router's HTTP front door calls its own
  // ChatService through it). Messages up to options.max_message_bytes.
  std::shared_ptr<grpc::Channel> InProcessChannel();

  // Registers a hook run at the start of Shutdown, after health turns
  // NOT_SERVING and before new calls are refused (e.g. a worker's Drain).
  void SetDrainHook(std::function<void()> hook);

  // Graceful shutdown: health NOT_SERVING for every service (kLivenessService
  // included), the drain hook,
  // then no new calls; in-flight calls get until drain_timeout, after which
  // they are cancelled. Idempotent and thread-safe; returns when stopped.
  void Shutdown();

  bool shutting_down() const;

  // Sets the health status of "" and every bound service (e.g. NOT_SERVING
  // while a worker drains), on both ports; kLivenessService is left as it is.
  // Thread-safe.
  void SetServing(bool serving);

 private:
  // Answers every method of the health-only port that is not grpc.health.v1
  // with UNIMPLEMENTED.
  class HealthOnlyFallback final : public grpc::CallbackGenericService {
   public:
    grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override;
  };

  GrpcServer(ServerOptions options, std::unique_ptr<grpc::Server> server, int port,
             std::unique_ptr<HealthOnlyFallback> health_fallback,
             std::unique_ptr<grpc::Server> health_server, int health_port,
             std::vector<std::string> names)
      : options_(std::move(options)),
        server_(std::move(server)),
        port_(port),
        health_fallback_(std::move(health_fallback)),
        health_server_(std::move(health_server)),
        health_port_(health_port),
        service_names_(std::move(names)) {}

  // Sets one health name on both servers.
  void SetHealth(const std::string& name, bool serving);

  const ServerOptions options_;
  std::unique_ptr<grpc::Server> server_;
  const int port_;
  // Outlives health_server_ (declared before it), which uses it.
  std::unique_ptr<HealthOnlyFallback> health_fallback_;
  std::unique_ptr<grpc::Server> health_server_;  // null without options.health_port
  const int health_port_;
  const std::vector<std::string> service_names_;
  mutable absl::Mutex mu_;
  std::function<void()> drain_hook_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

// Blocks SIGINT and SIGTERM in the calling thread. Call first in main(), before
// any thread starts, so that every thread inherits the mask and the signals are
// only ever taken by WaitForShutdownSignal. Threads that already run (started by
// a library constructor) get a handler that forwards the signals to the calling
// thread instead of the default action, which would end the process.
void BlockShutdownSignals();

// Waits until SIGINT or SIGTERM arrives and returns its number.
int WaitForShutdownSignal();

}  // namespace hc

#endif  // HC_COMMON_SERVER_H_
