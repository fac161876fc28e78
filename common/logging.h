// Minimal leveled logging and invariant checks (Debian's Abseil LTS has no
// absl/log). One line per message, written with a single write(2) so lines
// from different threads never interleave.
//
//   HC_LOG(INFO) << "listening on " << port;
//   HC_CHECK(block < num_blocks_) << "block id out of range: " << block;
//
// HC_CHECK is for true invariants only: a failure means the program's own
// state is broken, so it logs and aborts. Bad input is an absl::Status.
#ifndef HC_COMMON_LOGGING_H_
#define HC_COMMON_LOGGING_H_

#include <sstream>
#include <string_view>

namespace hc {

enum class LogSeverity { kInfo = 0, kWarning = 1, kError = 2, kFatal = 3 };

// Messages below this severity are dropped. Thread-safe.
void SetMinLogSeverity(LogSeverity severity);
LogSeverity MinLogSeverity();

namespace logging_internal {

class LogMessage {
 public:
  LogMessage(const char* file, int line, LogSeverity severity);
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  ~LogMessage();  // Emits; aborts for kFatal.
  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

// Turns the stream expression into void so it can sit in a ternary.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace logging_internal
}  // namespace hc

#define HC_LOG_SEVERITY_INFO ::hc::LogSeverity::kInfo
#define HC_LOG_SEVERITY_WARNING ::hc::LogSeverity::kWarning
#define HC_LOG_SEVERITY_ERROR ::hc::LogSeverity::kError
#define HC_LOG_SEVERITY_FATAL ::hc::LogSeverity::kFatal

#define HC_LOG(severity)                                                                       \
  (HC_LOG_SEVERITY_##severity) < ::hc::MinLogSeverity()                                        \
      ? (void)0                                                                                \
      : ::hc::logging_internal::Voidify() &                                                    \
            ::hc::logging_internal::LogMessage(__FILE__, __LINE__, HC_LOG_SEVERITY_##severity) \
                .stream()

#define HC_CHECK(condition)                                                                   \
  (condition)                                                                                 \
      ? (void)0                                                                               \
      : ::hc::logging_internal::Voidify() &                                                   \
            ::hc::logging_internal::LogMessage(__FILE__, __LINE__, ::hc::LogSeverity::kFatal) \
                    .stream()                                                                 \
                << "Check failed: " #condition " "

#define HC_CHECK_OK(expr)                                                            \
  do {                                                                               \
    const ::absl::Status hc_check_status_ = (expr);                                  \
    HC_CHECK(hc_check_status_.ok()) << #expr << ": " << hc_check_status_.ToString(); \
  } while (false)

#endif  // HC_COMMON_LOGGING_H_
