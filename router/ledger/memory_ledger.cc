#include "router/ledger/memory_ledger.h"

#include "router/ledger/table_ledger.h"

namespace hc::router {

std::unique_ptr<ConversationLedger> NewMemoryLedger(Clock clock) {
  return std::make_unique<TableLedger>(std::move(clock));
}

std::unique_ptr<ConversationLedger> NewMemoryLedger(const LedgerOptions& options) {
  return std::make_unique<TableLedger>(options);
}

}  // namespace hc::router
