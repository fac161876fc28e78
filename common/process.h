// Process start-up shared by hc-router, hc-worker and tools: flag parsing,
// log level, and the server flags both services take.
#ifndef HC_COMMON_PROCESS_H_
#define HC_COMMON_PROCESS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/server.h"

namespace hc {

// Parses absl flags (exits with usage on bad flags), applies --log_level and
// blocks SIGINT/SIGTERM for WaitForShutdownSignal. Returns positional args.
std::vector<char*> InitProcess(int argc, char** argv, const char* usage);

// ServerOptions from the shared flags --host, --max_message_bytes,
// --drain_timeout, --reflection, --health_port, with the given port, and TLS
// (common/tls.h) from --tls_cert, --tls_key, --tls_refresh_interval with
// `client_ca_file` (the binary's own flag: the router's --tls_client_ca, the
// worker's --peer_ca). INVALID_ARGUMENT / NOT_FOUND naming the problem when
// the flags or the certificate files are wrong.
absl::StatusOr<ServerOptions> ServerOptionsFromFlags(int port, const std::string& client_ca_file);

// What the "listening on" line adds after the metrics endpoint: the health
// port (" health HOST:PORT") and the port's security (" tls" or " mtls")
// when set; empty for a plaintext server without one.
std::string ListeningSuffix(const GrpcServer& server, const std::string& client_ca_file);

// Where /metrics binds: --metrics_host, or --host when that is empty.
std::string MetricsHostFromFlags();

// --tls_refresh_interval: how often every certificate file is re-read.
absl::Duration TlsRefreshIntervalFromFlags();

}  // namespace hc

#endif  // HC_COMMON_PROCESS_H_
