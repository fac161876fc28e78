#include "common/process.h"

#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/tls.h"

ABSL_FLAG(std::string, host, "127.0.0.1",
          "Address the gRPC and metrics servers bind to (0.0.0.0 in containers)");
ABSL_FLAG(std::string, metrics_host, "",
          "Address the Prometheus /metrics server binds to (empty: --host), e.g. an interface "
          "only the monitoring network reaches");
ABSL_FLAG(bool, reflection, false,
          "Serve gRPC server reflection (grpc.reflection.v1alpha) on the gRPC port, for grpcurl "
          "and similar tools; off by default, as it describes every method to anyone who connects");
ABSL_FLAG(int32_t, health_port, -1,
          "Also serve grpc.health.v1, and nothing else, in plaintext on this port of --host (0 "
          "picks a free one; -1: off): for the kubelet's gRPC probes, which cannot do TLS, while "
          "--port requires it");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain of the gRPC port; with --tls_key the port speaks TLS only "
          "(empty: plaintext)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(absl::Duration, tls_refresh_interval, hc::kDefaultTlsRefreshInterval,
          "How often certificate and CA files are re-read: a renewed certificate is served to new "
          "connections within this, without a restart; open connections keep theirs (>= 1s)");
ABSL_FLAG(int32_t, max_message_bytes, 64 << 20, "Largest gRPC message accepted or sent");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(30),
          "On SIGTERM/SIGINT: how long in-flight calls may finish before they are cancelled");
ABSL_FLAG(std::string, log_level, "info", "Minimum log severity: info, warning, error");
ABSL_FLAG(bool, mutex_deadlock_detection, false,
          "Check every absl::Mutex acquisition against a global lock-order graph (a debugging "
          "aid, on by default in tests; it costs a global lock per acquisition)");

namespace hc {

std::vector<char*> InitProcess(int argc, char** argv, const char* usage) {
  absl::SetProgramUsageMessage(usage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const std::string level = absl::AsciiStrToLower(absl::GetFlag(FLAGS_log_level));
  if (level == "warning") {
    SetMinLogSeverity(LogSeverity::kWarning);
  } else if (level == "error") {
    SetMinLogSeverity(LogSeverity::kError);
  } else {
    SetMinLogSeverity(LogSeverity::kInfo);
  }
  // Abseil enables its lock-order checker in builds without NDEBUG, which is
  // how Debian builds libabsl: serving binaries opt out, tests keep it.
  if (!absl::GetFlag(FLAGS_mutex_deadlock_detection)) {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  }
  BlockShutdownSignals();
  return args;
}

absl::StatusOr<ServerOptions> ServerOptionsFromFlags(int port, const std::string& client_ca_file) {
  ServerOptions o;
  o.host = absl::GetFlag(FLAGS_host);
  o.port = port;
  o.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  o.drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  o.reflection = absl::GetFlag(FLAGS_reflection);
  o.health_port = absl::GetFlag(FLAGS_health_port);
  if (o.health_port < -1 || o.health_port > 65535) {
    return absl::InvalidArgumentError("--health_port must be -1 (off), 0 (any) or a port number");
  }
  TlsServerConfig tls;
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  tls.key_file = absl::GetFlag(FLAGS_tls_key);
  tls.client_ca_file = client_ca_file;
  tls.refresh_interval = TlsRefreshIntervalFromFlags();
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds = MakeServerCredentials(tls);
  if (!creds.ok()) {
    return absl::Status(creds.status().code(),
                        absl::StrCat("gRPC port TLS: ", creds.status().message()));
  }
  o.credentials = *std::move(creds);
  return o;
}

std::string ListeningSuffix(const GrpcServer& server, const std::string& client_ca_file) {
  std::string out;
  if (server.health_port() >= 0) {
    absl::StrAppend(&out, " health ", absl::GetFlag(FLAGS_host), ":", server.health_port());
  }
  if (!absl::GetFlag(FLAGS_tls_cert).empty())
    absl::StrAppend(&out, client_ca_file.empty() ? " tls" : " mtls");
  return out;
}

std::string MetricsHostFromFlags() {
  const std::string host = absl::GetFlag(FLAGS_metrics_host);
  return host.empty() ? absl::GetFlag(FLAGS_host) : host;
}

absl::Duration TlsRefreshIntervalFromFlags() { return absl::GetFlag(FLAGS_tls_refresh_interval); }

}  // namespace hc
