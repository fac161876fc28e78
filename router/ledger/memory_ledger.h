// In-memory ledger (the default backend): a LedgerTable behind one mutex.
// Nothing survives a restart; workers recompute from the clients' next turns.
#ifndef HC_ROUTER_LEDGER_MEMORY_LEDGER_H_
#define HC_ROUTER_LEDGER_MEMORY_LEDGER_H_

#include <memory>

#include "router/ledger/ledger.h"

namespace hc::router {

std::unique_ptr<ConversationLedger> NewMemoryLedger(Clock clock = nullptr);
// With the options' clock, conversation_ttl and per-salt cap.
std::unique_ptr<ConversationLedger> NewMemoryLedger(const LedgerOptions& options);

}  // namespace hc::router

#endif  // HC_ROUTER_LEDGER_MEMORY_LEDGER_H_
