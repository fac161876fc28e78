// Durable ledger: the in-memory table plus an append-only log in `dir`.
//
// Every mutation (commit, delete) is appended to ledger.log as a framed record
// [u32 length][u32 CRC-32C][payload] before it is applied; leases are not
// logged (they die with the router that held them). On open, ledger.snap and
// then the log are replayed; a torn or corrupt tail (a crash mid-write) is
// dropped and truncated away, so at most the record being written is lost.
// Records carry a sequence number and the snapshot the last one it includes,
// so a crash between writing a snapshot and truncating the log replays
// nothing twice. Compaction rewrites the snapshot (temp file, fsync, rename)
// and truncates the log once the log outgrows max(compact_min_bytes, snapshot).
//
// fsync: kAlways syncs every record (survives power loss), kInterval at most
// once per interval on a write, kNever leaves it to the OS. Every policy
// survives a process crash: records are written with write(2) before the
// call returns.
#ifndef HC_ROUTER_LEDGER_FILE_LEDGER_H_
#define HC_ROUTER_LEDGER_FILE_LEDGER_H_

#include <memory>

#include "router/ledger/ledger.h"

namespace hc::router {

// Creates `options.dir` if needed and replays it. DATA_LOSS for a corrupt
// snapshot; INTERNAL for I/O errors.
absl::StatusOr<std::unique_ptr<ConversationLedger>> OpenFileLedger(const LedgerOptions& options);

}  // namespace hc::router

#endif  // HC_ROUTER_LEDGER_FILE_LEDGER_H_
