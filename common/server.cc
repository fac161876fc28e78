#include "common/server.h"

#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/server_builder.h"

namespace hc {

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(
    const ServerOptions& options, const std::vector<Binding>& services) {
  // Both are process-wide switches read when a server is built.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  int bound_port = 0;
  const std::string address = absl::StrCat(options.host, ":", options.port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound_port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
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

  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  auto result = std::unique_ptr<GrpcServer>(
      new GrpcServer(options, std::move(server), bound_port, std::move(names)));
  result->SetServing(options.start_serving);
  result->server_->GetHealthCheckService()->SetServingStatus(kLivenessService, true);
  return result;
}

void GrpcServer::SetServing(bool serving) {
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  // By name: the overload without one would set every name, kLivenessService too.
  health->SetServingStatus("", serving);
  for (const std::string& name : service_names_) health->SetServingStatus(name, serving);
}

GrpcServer::~GrpcServer() { Shutdown(); }

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
  server_->GetHealthCheckService()->SetServingStatus(kLivenessService, false);
  if (hook) hook();
  // Refuses new calls at once; in-flight calls run until the deadline, then
  // are cancelled. Open health Watch streams count as in-flight, which is why
  // the router polls Check instead.
  server_->Shutdown(absl::ToChronoTime(absl::Now() + options_.drain_timeout));
  server_->Wait();
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
