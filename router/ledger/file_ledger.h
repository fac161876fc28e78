// Durable ledger: the in-memory table plus an append-only log in `dir`
// (format: ledger_files.h).
//
// Commits and deletes are validated against the table at once (on the
// caller's thread, under the table mutex) and queued; leases and reads stay
// in memory (leases are not logged: they die with the router that held them).
// One writer thread takes every queued record, appends them with one write(2)
// and, with fsync=always, one fdatasync(2) per batch (group commit: N
// concurrent turns cost about one fdatasync, not N), then applies them to the
// table and runs their callbacks (on the writer thread). Get only sees what
// was applied, so it never returns a commit that was not yet acknowledged.
// While a key has a record queued, every other mutation of that key
// (AcquireLease, RenewLease, ReleaseLease, Commit, Delete) waits for the
// record to be resolved and then runs (its callback on the writer thread):
// a lease cannot be taken over under a pending commit, and a pending delete
// holds the entry as "deleting".
//
// Expiry (conversation_ttl) is logged: the writer thread sweeps
// kExpirySweepBatch entries every expiry_sweep_interval and queues a delete
// record for each expired conversation, and AcquireLease of an expired one
// queues that record and waits for it before leasing afresh; the table forgets
// the conversation once its record is written (Get and Delete already see it
// as absent). So replay is exact whatever the TTL is at the next start (a
// shorter or no TTL never resurrects it, a restarted conversation replays as
// the new one); conversations that went idle while the router was down are
// expired by the sweep after replay. Lease-only entries whose lease ended
// are dropped by the sweep without a record (leases are not logged).
//
// Replay (at open): only a torn tail, an incomplete last frame left by a
// crash mid-write, is dropped (and truncated away). A bad frame followed by
// good ones, or a record that does not apply, is corruption: open fails with
// DATA_LOSS naming the file and offset, and the file is left untouched.
// A failed append or fdatasync is cut off the log again (ftruncate + sync)
// before its callers hear the error, so the log holds exactly the
// acknowledged records; if even that fails, the ledger turns read-only
// (commits and deletes answer INTERNAL) with a loud error.
//
// Durability (what an acknowledged commit survives):
//   always    power loss: the batch is fdatasync'ed before any callback runs.
//   interval  a process crash (records are written before the callback);
//             on power loss, acknowledged commits of at most the last
//             fsync_interval (plus one fdatasync's duration) can be lost.
//   never     a process crash; power loss loses what the OS had not flushed.
//
// Compaction runs in the background without blocking appends: once the active
// log outgrows max(compact_min_bytes, snapshot size), the writer thread
// rotates it (ledger.log -> ledger.log.old, a new ledger.log; between two
// batches, a rename, an open and a directory fsync) and a compaction thread
// builds the new snapshot from the old snapshot and ledger.log.old alone
// (files, not the live table), writes ledger.snap.tmp, fsyncs it, renames it
// over ledger.snap, fsyncs the directory (checked: on failure the old segment
// is kept and the compaction retried later), then deletes ledger.log.old.
// Replay after a crash at any of these steps is exact (sequence numbers).
// Memory: the compaction's peak is the old snapshot's and the old segment's
// bytes (read whole) plus a second copy of the committed table built from
// them, i.e. roughly twice the committed state, on top of the live table.
// The queue holds the records not yet written (one encoded record each).
//
// Thread-safety: thread-safe. Callbacks run inline (reads, leases, argument
// errors) or on the writer thread (commits, deletes, deferred operations).
#ifndef HC_ROUTER_LEDGER_FILE_LEDGER_H_
#define HC_ROUTER_LEDGER_FILE_LEDGER_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "router/ledger/file_ops.h"
#include "router/ledger/ledger.h"

namespace hc::router {

struct FileLedgerStats {
  uint64_t records = 0;      // log records written
  uint64_t writes = 0;       // write batches (one write(2) each)
  uint64_t syncs = 0;        // fdatasync(2) calls on the log
  uint64_t compactions = 0;  // completed compactions
  uint64_t compaction_failures = 0;
};

// The steps of one background compaction, in order (for tests).
enum class CompactionStep {
  kRotated,            // ledger.log.old holds the segment to compact
  kSnapshotWritten,    // ledger.snap.tmp written and fsynced
  kSnapshotInstalled,  // renamed over ledger.snap, directory fsynced
  kDone,               // ledger.log.old deleted
  kFailed,             // a step failed; the files stay as they are (retried later)
};

struct FileLedgerOptions {
  // The file system calls (null: PosixFileOps()). Not owned; must outlive the
  // ledger.
  FileOps* file_ops = nullptr;
  // false: one record per write and fdatasync (the baseline group commit is
  // measured against).
  bool group_commit = true;
  // Called on the compaction thread after each step (and with kFailed after
  // a failure; its return value is then ignored); returning false stops
  // the compaction there, leaving the files as a crash at that step would
  // (tests). May block (e.g. to hold a compaction while appends go on).
  std::function<bool(CompactionStep)> on_compaction_step;
};

class FileLedger : public ConversationLedger {
 public:
  virtual FileLedgerStats stats() const = 0;
};

// Creates `options.dir` if needed and replays it. DATA_LOSS for a corrupt
// snapshot or log (see above); INTERNAL for I/O errors.
absl::StatusOr<std::unique_ptr<FileLedger>> OpenFileLedger(const LedgerOptions& options,
                                                           FileLedgerOptions file_options = {});

}  // namespace hc::router

#endif  // HC_ROUTER_LEDGER_FILE_LEDGER_H_
