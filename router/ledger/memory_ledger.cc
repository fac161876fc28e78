#include "router/ledger/memory_ledger.h"

#include "router/ledger/table_ledger.h"

namespace hc::router {

std::unique_ptr<ConversationLedger> NewMemoryLedger(Clock clock) {
  return std::make_unique<TableLedger>(std::move(clock));
}

}  // namespace hc::router
