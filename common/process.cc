#include "common/process.h"

#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"

ABSL_FLAG(std::string, host, "127.0.0.1",
          "Address the gRPC and metrics servers bind to (0.0.0.0 in containers)");
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

ServerOptions ServerOptionsFromFlags(int port) {
  ServerOptions o;
  o.host = absl::GetFlag(FLAGS_host);
  o.port = port;
  o.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  o.drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  return o;
}

}  // namespace hc
