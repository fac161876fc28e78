#include "common/server.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/impl/server_builder_option.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/server_builder.h"

namespace hc {

namespace {

// Decides per server whether it serves reflection. libgrpc++_reflection adds
// its plugin to every ServerBuilder of the process once the library is loaded
// (a static initializer), so the plugin is removed here unless asked for,
// then added back, once, when it is.
class ReflectionOption final : public grpc::ServerBuilderOption {
 public:
  explicit ReflectionOption(bool enabled) : enabled_(enabled) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    const std::string name = grpc::reflection::ProtoServerReflectionPlugin().name();
    plugins->erase(std::remove_if(plugins->begin(), plugins->end(),
                                  [&](const auto& p) { return p->name() == name; }),
                   plugins->end());
    if (enabled_)
      plugins->push_back(std::make_unique<grpc::reflection::ProtoServerReflectionPlugin>());
  }

 private:
  const bool enabled_;
};

// The plaintext health-only server: no service of its own, so it serves the
// default health service alone (reflection explicitly off). gRPC refuses to
// build a server without a callback or synchronous method (the default health
// service is added after that check), hence `fallback`.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartHealthServer(
    const ServerOptions& options, grpc::CallbackGenericService* fallback, int* bound_port) {
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(options.host, ":", options.health_port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), bound_port);
  builder.SetOption(std::make_unique<ReflectionOption>(false));
  builder.RegisterCallbackGenericService(fallback);
  // Health requests are tiny; nothing else is served.
  builder.SetMaxReceiveMessageSize(4096);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *bound_port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve health on ", address));
  }
  return server;
}

}  // namespace

grpc::ServerGenericBidiReactor* GrpcServer::HealthOnlyFallback::CreateReactor(
    grpc::GenericCallbackServerContext* /*ctx*/) {
  class Refuse final : public grpc::ServerGenericBidiReactor {
   public:
    Refuse() {
      Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                          "this port serves grpc.health.v1 only; use the service port"));
    }
    void OnDone() override { delete this; }
  };
  return new Refuse;
}

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(
    const ServerOptions& options, const std::vector<Binding>& services) {
  // A process-wide switch read when a server is built.
  grpc::EnableDefaultHealthCheckService(true);

  grpc::ServerBuilder builder;
  int bound_port = 0;
  const std::string address = absl::StrCat(options.host, ":", options.port);
  builder.AddListeningPort(
      address, options.credentials ? options.credentials : grpc::InsecureServerCredentials(),
      &bound_port);
  builder.SetOption(std::make_unique<ReflectionOption>(options.reflection));
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Let clients ping as often as every 10 s without being sent GOAWAY.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  if (options.memory_quota_bytes > 0) {
    grpc::ResourceQuota quota(absl::StrCat("hc-server-", options.port));
    quota.Resize(static_cast<size_t>(options.memory_quota_bytes));
    builder.SetResourceQuota(quota);  // the builder keeps its own reference
  }
  std::vector<std::string> names;
  for (const Binding& b : services) {
    builder.RegisterService(b.service);
    names.push_back(b.name);
  }

  std::unique_ptr<HealthOnlyFallback> health_fallback;
  std::unique_ptr<grpc::Server> health_server;
  int health_port = -1;
  if (options.health_port >= 0) {
    // First, so that a port conflict is reported before the service port opens.
    health_fallback = std::make_unique<HealthOnlyFallback>();
    absl::StatusOr<std::unique_ptr<grpc::Server>> hs =
        StartHealthServer(options, health_fallback.get(), &health_port);
    if (!hs.ok()) return hs.status();
    health_server = *std::move(hs);
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    if (health_server != nullptr) health_server->Shutdown(std::chrono::system_clock::now());
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  auto result = std::unique_ptr<GrpcServer>(
      new GrpcServer(options, std::move(server), bound_port, std::move(health_fallback),
                     std::move(health_server), health_port, std::move(names)));
  result->SetServing(options.start_serving);
  result->SetHealth(kLivenessService, true);
  return result;
}

void GrpcServer::SetHealth(const std::string& name, bool serving) {
  server_->GetHealthCheckService()->SetServingStatus(name, serving);
  if (health_server_ != nullptr)
    health_server_->GetHealthCheckService()->SetServingStatus(name, serving);
}

void GrpcServer::SetServing(bool serving) {
  // By name: the overload without one would set every name, kLivenessService too.
  SetHealth("", serving);
  for (const std::string& name : service_names_) SetHealth(name, serving);
}

GrpcServer::~GrpcServer() { Shutdown(); }

std::shared_ptr<grpc::Channel> GrpcServer::InProcessChannel() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options_.max_message_bytes);
  args.SetMaxSendMessageSize(options_.max_message_bytes);
  return server_->InProcessChannel(args);
}

std::string GrpcServer::address() const { return absl::StrCat(options_.host, ":", port_); }

void GrpcServer::SetDrainHook(std::function<void()> hook) {
  absl::MutexLock lock(&mu_);
  drain_hook_ = std::move(hook);
}

bool GrpcServer::shutting_down() const {
  absl::MutexLock lock(&mu_);
  return shutting_down_;
}

void GrpcServer::Shutdown() {
  std::function<void()> hook;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) {
      // Another thread is shutting down: wait for it to finish.
      mu_.Await(absl::Condition(&stopped_));
      return;
    }
    shutting_down_ = true;
    hook = drain_hook_;
  }
  HC_LOG(INFO) << "shutting down " << address() << ": draining for up to "
               << absl::FormatDuration(options_.drain_timeout);
  SetServing(false);
  SetHealth(kLivenessService, false);
  if (hook) hook();
  // Refuses new calls at once; in-flight calls run until the deadline, then
  // are cancelled. Open health Watch streams count as in-flight, which is why
  // the router polls Check instead.
  server_->Shutdown(absl::ToChronoTime(absl::Now() + options_.drain_timeout));
  server_->Wait();
  // Last, so that probes read NOT_SERVING for the whole drain; its open
  // Watch streams are cancelled at once.
  if (health_server_ != nullptr) {
    health_server_->Shutdown(std::chrono::system_clock::now());
    health_server_->Wait();
  }
  absl::MutexLock lock(&mu_);
  stopped_ = true;
}

namespace {

// The thread that blocks the shutdown signals and takes them with
// WaitForShutdownSignal.
pthread_t g_shutdown_signal_thread;

// Runs only in a thread that does not block SIGINT/SIGTERM: one started before
// BlockShutdownSignals, e.g. by a library constructor (OpenBLAS starts its
// thread pool before main). The kernel hands a process-directed signal to such
// a thread whenever the main thread is not inside sigwait, i.e. while it
// drains; the default action would then end the process mid-drain (Ctrl-C in
// `make run`, followed by run-stack.sh's SIGTERM, did). The signal is forwarded
// to the blocking thread: taken by its next WaitForShutdownSignal, or left
// pending there once it has stopped waiting. pthread_kill is
// async-signal-safe.
extern "C" void ForwardShutdownSignal(int sig) {
  const int saved_errno = errno;
  pthread_kill(g_shutdown_signal_thread, sig);
  errno = saved_errno;
}

}  // namespace

void BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  g_shutdown_signal_thread = pthread_self();
  struct sigaction sa = {};
  sa.sa_handler = ForwardShutdownSignal;
  sa.sa_mask = set;  // no nesting of the two
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int WaitForShutdownSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

}  // namespace hc
