#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "router/ledger/file_ledger.h"
#include "router/ledger/ledger.h"
#include "router/ledger/memory_ledger.h"
#include "router/ledger/redis_ledger.h"

namespace hc::router {

absl::StatusOr<std::unique_ptr<ConversationLedger>> OpenLedger(const LedgerOptions& options) {
  if (absl::StartsWith(options.backend, "redis://") ||
      absl::StartsWith(options.backend, "rediss://")) {
    auto ledger = OpenRedisLedger(options);
    if (!ledger.ok()) return ledger.status();
    return std::unique_ptr<ConversationLedger>(std::move(ledger).value());
  }
  if (options.backend == "file" || (options.backend == "memory" && !options.dir.empty())) {
    auto ledger = OpenFileLedger(options);
    if (!ledger.ok()) return ledger.status();
    return std::unique_ptr<ConversationLedger>(std::move(ledger).value());
  }
  if (options.backend == "memory" || options.backend.empty()) return NewMemoryLedger(options);
  return absl::InvalidArgumentError(absl::StrCat("unknown ledger backend '", options.backend,
                                                 "' (memory, file, redis://host:port)"));
}

}  // namespace hc::router
