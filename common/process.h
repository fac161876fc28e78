// Process start-up shared by hc-router, hc-worker and tools: flag parsing,
// log level, and the server flags both services take.
#ifndef HC_COMMON_PROCESS_H_
#define HC_COMMON_PROCESS_H_

#include <vector>

#include "common/server.h"

namespace hc {

// Parses absl flags (exits with usage on bad flags), applies --log_level and
// blocks SIGINT/SIGTERM for WaitForShutdownSignal. Returns positional args.
std::vector<char*> InitProcess(int argc, char** argv, const char* usage);

// ServerOptions from the shared flags --host, --max_message_bytes,
// --drain_timeout, with the given port.
ServerOptions ServerOptionsFromFlags(int port);

}  // namespace hc

#endif  // HC_COMMON_PROCESS_H_
