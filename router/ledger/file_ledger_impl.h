// The file ledger's implementation class, shared by the files that implement
// it (internal to router/ledger; OpenFileLedger in file_ledger.h is the entry
// point):
//   file_ledger.cc             opening (replay) and the ledger operations,
//                              which validate under mu_ and queue mutations;
//   file_ledger_writer.cc      the writer thread: batched appends, syncs,
//                              failed-append undo, expiry sweeps;
//   file_ledger_compaction.cc  log rotation and the compaction thread.
#ifndef HC_ROUTER_LEDGER_FILE_LEDGER_IMPL_H_
#define HC_ROUTER_LEDGER_FILE_LEDGER_IMPL_H_

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "router/ledger/file_ledger.h"
#include "router/ledger/ledger_files.h"
#include "router/ledger/ledger_table.h"

namespace hc::router::file_ledger_internal {

class FileLedgerImpl final : public FileLedger {
 public:
  FileLedgerImpl(const LedgerOptions& o, FileLedgerOptions fo)
      : options_(o),
        file_options_(std::move(fo)),
        ops_(file_options_.file_ops != nullptr ? *file_options_.file_ops : PosixFileOps()),
        clock_(o.clock ? o.clock : Clock([] { return absl::Now(); })),
        log_path_(absl::StrCat(o.dir, "/", kLogFile)),
        old_log_path_(absl::StrCat(o.dir, "/", kOldLogFile)),
        snap_path_(absl::StrCat(o.dir, "/", kSnapshotFile)),
        snap_tmp_path_(absl::StrCat(o.dir, "/", kSnapshotTmpFile)),
        table_(TableLimits{o.conversation_ttl, o.max_conversations_per_salt,
                           o.tenant_conversation_limit}) {}

  ~FileLedgerImpl() override;
  absl::Status Open();

  using ConversationLedger::AcquireLease;
  using ConversationLedger::Commit;
  using ConversationLedger::CountConversations;
  using ConversationLedger::Delete;
  using ConversationLedger::Get;
  using ConversationLedger::ReleaseLease;
  using ConversationLedger::RenewLease;

  void AcquireLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                    RecordCallback done) override;

  void RenewLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                  StatusCallback done) override;

  void ReleaseLease(const LedgerKey& key, std::string_view holder, StatusCallback done) override;
  void Get(const LedgerKey& key, RecordCallback done) override;
  void Commit(const LedgerKey& key, std::string_view holder, CommitRequest commit,
              StatusCallback done) override;

  void Delete(const LedgerKey& key, StatusCallback done) override;
  void CountConversations(CountCallback done) override;
  FileLedgerStats stats() const override {
    absl::MutexLock lock(&mu_);
    return stats_;
  }

  LedgerCounters counters() const override {
    absl::MutexLock lock(&mu_);
    return table_.counters();
  }

 private:
  using Deferred = absl::AnyInvocable<void() &&>;

  // A validated mutation waiting for the writer thread.
  struct Pending {
    std::string key;  // table key
    bool is_delete = false;
    bool expiry = false;   // a delete for idleness (counted), with no caller
    CommitRequest commit;  // commits only
    absl::Time time;       // commits only: the commit's last activity
    std::string frame;     // the framed log record
    StatusCallback done;
  };

  absl::Status WritableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stopping_) return absl::UnavailableError("the ledger is shutting down");
    return poisoned_;
  }

  void Enqueue(Pending p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    busy_.try_emplace(p.key);
    queue_.push_back(std::move(p));
  }

  bool WriterHasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || stopping_;
  }

  // Logs the expiry of `key` (a delete record: replay never brings it back,
  // whatever the TTL is then); the table forgets it once that is written.
  void EnqueueExpiryLocked(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Writer thread, with a TTL: one bounded sweep. Keys with a record queued
  // are left to the next pass.
  void SweepLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The writer thread: batches, writes, syncs, applies, answers. With
  // fsync=interval it also syncs on a timer (fsync_interval after the last
  // sync, only when something is unsynced), so the loss window is bounded
  // even when no later write comes.
  void WriterLoop();

  // Appends `batch` with one write (and one fdatasync under fsync=always),
  // then applies it and runs its callbacks and the operations that waited
  // for its keys.
  void WriteBatch(std::vector<Pending> batch);

  // Writer thread, fsync=interval: the timer's sync.
  void IntervalSync();

  // Writer thread: the batch after `good_bytes` failed (reported to its
  // callers), so it must not be in the log: a later acknowledged record of the
  // same round would otherwise be shadowed by it on replay. Cuts the file back
  // and makes the cut durable; when even that fails, the log is poisoned and
  // the ledger refuses every later commit and delete (read-only) rather than
  // acknowledge records after an unknown tail.
  void UndoFailedAppend(uint64_t good_bytes, const absl::Status& why);

  // Writer thread: once the active log outgrows the threshold, rotates it and
  // hands the old segment to the compaction thread.
  void MaybeCompact();

  // Writer thread: ledger.log becomes ledger.log.old; appends go to a new
  // ledger.log. On failure everything stays as it was.
  absl::Status Rotate();
  void CompactionFailedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool CompactorHasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return compaction_requested_ || stopping_;
  }

  void CompactorLoop();
  bool Step(CompactionStep step) {
    return !file_options_.on_compaction_step || file_options_.on_compaction_step(step);
  }

  // Compaction thread: ledger.snap + ledger.log.old -> ledger.snap.
  absl::StatusOr<uint64_t> CompactOldSegment();

  const LedgerOptions options_;
  const FileLedgerOptions file_options_;
  FileOps& ops_;
  const Clock clock_;
  const std::string log_path_;
  const std::string old_log_path_;
  const std::string snap_path_;
  const std::string snap_tmp_path_;

  mutable absl::Mutex mu_;
  LedgerTable table_ ABSL_GUARDED_BY(mu_);
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;  // the last sequence number given out
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  // Keys with a record queued or being written, and the operations on them
  // that wait for it.
  absl::flat_hash_map<std::string, std::vector<Deferred>> busy_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status poisoned_ ABSL_GUARDED_BY(mu_);  // not OK: the log is read-only
  // Expiry sweeps (with a conversation_ttl), run by the writer thread.
  const bool sweeping_ = options_.conversation_ttl > absl::ZeroDuration();
  absl::Time next_sweep_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  FileLedgerStats stats_ ABSL_GUARDED_BY(mu_);
  // Compaction state, shared by the writer and the compaction thread.
  bool compacting_ ABSL_GUARDED_BY(mu_) = false;
  bool compaction_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool old_segment_exists_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t snapshot_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int consecutive_failures_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time next_compaction_attempt_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();

  // Owned by the writer thread (set by Open before it starts, read by the
  // destructor after it ended).
  int fd_ = -1;
  uint64_t log_bytes_ = 0;  // the active segment's size
  bool unsynced_ = false;   // written but not fdatasync'ed
  absl::Time last_sync_ = absl::InfinitePast();

  std::thread writer_;
  std::thread compactor_;
};

}  // namespace hc::router::file_ledger_internal

#endif  // HC_ROUTER_LEDGER_FILE_LEDGER_IMPL_H_
