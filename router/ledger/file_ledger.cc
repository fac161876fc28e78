#include "router/ledger/file_ledger.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "router/ledger/ledger_files.h"
#include "router/ledger/ledger_table.h"

namespace hc::router {
namespace {

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

  ~FileLedgerImpl() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (writer_.joinable()) writer_.join();
    if (compactor_.joinable()) compactor_.join();
    if (fd_ >= 0) {
      if (options_.fsync != FsyncPolicy::kNever && unsynced_) {
        if (absl::Status s = ops_.DataSync(fd_, log_path_); !s.ok()) {
          HC_LOG(ERROR) << "ledger: final sync failed: " << s.ToString();
        }
      }
      ops_.Close(fd_);
    }
  }

  absl::Status Open() {
    if (::mkdir(options_.dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::InternalError(absl::StrCat("mkdir ", options_.dir, ": ", std::strerror(errno)));
    }
    // A snapshot being written when the process died: the previous one (and
    // the log segments) are still complete.
    if (absl::Status s = ops_.Unlink(snap_tmp_path_); !s.ok() && !absl::IsNotFound(s)) return s;
    absl::MutexLock lock(&mu_);
    uint64_t snapshot_seq = 0;
    if (absl::StatusOr<std::string> snap = ops_.ReadFile(snap_path_); snap.ok()) {
      HC_ASSIGN_OR_RETURN(snapshot_seq, ReplaySnapshot(*snap, snap_path_, &table_));
      snapshot_bytes_ = snap->size();
    } else if (!absl::IsNotFound(snap.status())) {
      return snap.status();
    }
    seq_ = snapshot_seq;
    uint64_t applied = 0;
    for (const std::string* path : {&old_log_path_, &log_path_}) {
      absl::StatusOr<std::string> data = ops_.ReadFile(*path);
      if (absl::IsNotFound(data.status())) continue;
      if (!data.ok()) return data.status();
      HC_ASSIGN_OR_RETURN(SegmentReplay replay, ReplaySegment(*data, *path, snapshot_seq, &table_));
      seq_ = std::max(seq_, replay.last_seq);
      applied += replay.applied;
      if (replay.valid_bytes != data->size()) {
        HC_ASSIGN_OR_RETURN(int fd, ops_.OpenForAppend(*path));
        absl::Status s = ops_.Truncate(fd, replay.valid_bytes, *path);
        ops_.Close(fd);
        HC_RETURN_IF_ERROR(s);
      }
      if (path == &old_log_path_) {
        old_segment_exists_ = true;
      } else {
        log_bytes_ = replay.valid_bytes;
      }
    }
    HC_ASSIGN_OR_RETURN(fd_, ops_.OpenForAppend(log_path_));
    HC_LOG(INFO) << "ledger replayed " << applied << " log records in " << options_.dir << ", "
                 << table_.committed() << " conversations";
    if (old_segment_exists_) {
      // A compaction was cut short: finish it.
      compacting_ = true;
      compaction_requested_ = true;
    }
    writer_ = std::thread([this] { WriterLoop(); });
    compactor_ = std::thread([this] { CompactorLoop(); });
    return absl::OkStatus();
  }

  using ConversationLedger::AcquireLease;
  using ConversationLedger::Commit;
  using ConversationLedger::CountConversations;
  using ConversationLedger::Delete;
  using ConversationLedger::Get;
  using ConversationLedger::ReleaseLease;
  using ConversationLedger::RenewLease;

  void AcquireLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                    RecordCallback done) override {
    const std::string k = EncodeTableKey(key);
    absl::StatusOr<ConversationRecord> result;
    {
      absl::MutexLock lock(&mu_);
      if (auto it = busy_.find(k); it != busy_.end()) {
        it->second.push_back(
            [this, key, h = std::string(holder), ttl, d = std::move(done)]() mutable {
              AcquireLease(key, h, ttl, std::move(d));
            });
        return;
      }
      const absl::Time now = clock_();
      if (table_.Expired(k, now) && WritableLocked().ok()) {
        // Forget it durably first (a delete record), then lease it afresh.
        EnqueueExpiryLocked(k);
        busy_[k].push_back(
            [this, key, h = std::string(holder), ttl, d = std::move(done)]() mutable {
              AcquireLease(key, h, ttl, std::move(d));
            });
        return;
      }
      result = table_.AcquireLease(k, holder, now, ttl);
    }
    std::move(done)(std::move(result));
  }

  void RenewLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                  StatusCallback done) override {
    const std::string k = EncodeTableKey(key);
    absl::Status result;
    {
      absl::MutexLock lock(&mu_);
      if (auto it = busy_.find(k); it != busy_.end()) {
        it->second.push_back(
            [this, key, h = std::string(holder), ttl, d = std::move(done)]() mutable {
              RenewLease(key, h, ttl, std::move(d));
            });
        return;
      }
      result = table_.RenewLease(k, holder, clock_(), ttl);
    }
    std::move(done)(std::move(result));
  }

  void ReleaseLease(const LedgerKey& key, std::string_view holder, StatusCallback done) override {
    const std::string k = EncodeTableKey(key);
    {
      absl::MutexLock lock(&mu_);
      if (auto it = busy_.find(k); it != busy_.end()) {
        it->second.push_back([this, key, h = std::string(holder), d = std::move(done)]() mutable {
          ReleaseLease(key, h, std::move(d));
        });
        return;
      }
      table_.ReleaseLease(k, holder);
    }
    std::move(done)(absl::OkStatus());
  }

  void Get(const LedgerKey& key, RecordCallback done) override {
    const std::string k = EncodeTableKey(key);
    absl::StatusOr<ConversationRecord> result;
    {
      absl::MutexLock lock(&mu_);
      result = table_.Get(k, clock_());
    }
    std::move(done)(std::move(result));
  }

  void Commit(const LedgerKey& key, std::string_view holder, CommitRequest commit,
              StatusCallback done) override {
    const std::string k = EncodeTableKey(key);
    absl::Status error;
    {
      absl::MutexLock lock(&mu_);
      if (auto it = busy_.find(k); it != busy_.end()) {
        it->second.push_back(
            [this, key, h = std::string(holder), c = std::move(commit),
             d = std::move(done)]() mutable { Commit(key, h, std::move(c), std::move(d)); });
        return;
      }
      error = WritableLocked();
      if (error.ok()) error = table_.CheckCommit(k, holder, commit);
      if (error.ok()) {
        Pending p;
        p.key = k;
        p.time = clock_();
        p.frame = CommitRecord(++seq_, k, commit, p.time);
        p.commit = std::move(commit);
        p.done = std::move(done);
        Enqueue(std::move(p));
        return;
      }
    }
    std::move(done)(std::move(error));
  }

  void Delete(const LedgerKey& key, StatusCallback done) override {
    const std::string k = EncodeTableKey(key);
    absl::Status error;
    {
      absl::MutexLock lock(&mu_);
      if (auto it = busy_.find(k); it != busy_.end()) {
        it->second.push_back(
            [this, key, d = std::move(done)]() mutable { Delete(key, std::move(d)); });
        return;
      }
      error = WritableLocked();
      if (error.ok()) error = table_.CheckDelete(k, clock_());
      if (error.ok()) {
        Pending p;
        p.key = k;
        p.is_delete = true;
        p.frame = DeleteRecord(++seq_, k);
        p.done = std::move(done);
        Enqueue(std::move(p));
        return;
      }
    }
    std::move(done)(std::move(error));
  }

  void CountConversations(CountCallback done) override {
    uint64_t n;
    {
      absl::MutexLock lock(&mu_);
      n = table_.committed();
    }
    std::move(done)(n);
  }

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
  void EnqueueExpiryLocked(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Pending p;
    p.key = key;
    p.is_delete = true;
    p.expiry = true;
    p.frame = DeleteRecord(++seq_, key);
    Enqueue(std::move(p));
  }

  // Writer thread, with a TTL: one bounded sweep. Keys with a record queued
  // are left to the next pass.
  void SweepLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    next_sweep_ = absl::Now() + options_.expiry_sweep_interval;
    LedgerTable::SweepResult r = table_.Sweep(clock_(), kExpirySweepBatch);
    for (const std::string& k : r.stale) {
      if (!busy_.contains(k)) table_.Erase(k);  // a lease-only entry: nothing logged
    }
    if (!WritableLocked().ok()) return;
    for (const std::string& k : r.expired) {
      if (!busy_.contains(k)) EnqueueExpiryLocked(k);
    }
  }

  // The writer thread: batches, writes, syncs, applies, answers. With
  // fsync=interval it also syncs on a timer (fsync_interval after the last
  // sync, only when something is unsynced), so the loss window is bounded
  // even when no later write comes.
  void WriterLoop() {
    while (true) {
      std::vector<Pending> batch;
      {
        absl::MutexLock lock(&mu_);
        absl::Time deadline = absl::InfiniteFuture();
        if (options_.fsync == FsyncPolicy::kInterval && unsynced_) {
          deadline = last_sync_ + options_.fsync_interval;
        }
        if (sweeping_) deadline = std::min(deadline, next_sweep_);
        mu_.AwaitWithDeadline(absl::Condition(this, &FileLedgerImpl::WriterHasWork), deadline);
        if (sweeping_ && !stopping_ && absl::Now() >= next_sweep_) SweepLocked();
        if (queue_.empty() && !stopping_) {
          mu_.Unlock();
          IntervalSync();
          mu_.Lock();
          continue;
        }
        if (queue_.empty()) return;  // stopping, and everything written
        const size_t n = file_options_.group_commit ? queue_.size() : 1;
        batch.reserve(n);
        for (size_t i = 0; i < n; ++i) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      WriteBatch(std::move(batch));
      MaybeCompact();
    }
  }

  // Appends `batch` with one write (and one fdatasync under fsync=always),
  // then applies it and runs its callbacks and the operations that waited
  // for its keys.
  void WriteBatch(std::vector<Pending> batch) {
    std::string joined;
    std::string_view data;
    if (batch.size() == 1) {
      data = batch[0].frame;
    } else {
      size_t total = 0;
      for (const Pending& p : batch) total += p.frame.size();
      joined.reserve(total);
      for (const Pending& p : batch) joined += p.frame;
      data = joined;
    }
    bool synced = false;
    const uint64_t good_bytes = log_bytes_;
    absl::Status s = ops_.WriteAll(fd_, data, log_path_);
    if (s.ok()) {
      unsynced_ = true;
      const absl::Time now = absl::Now();
      if (options_.fsync == FsyncPolicy::kAlways || (options_.fsync == FsyncPolicy::kInterval &&
                                                     now - last_sync_ >= options_.fsync_interval)) {
        s = ops_.DataSync(fd_, log_path_);
        synced = true;
        if (s.ok()) {
          last_sync_ = now;
          unsynced_ = false;
        }
      }
    }
    if (s.ok()) {
      log_bytes_ += data.size();
    } else {
      UndoFailedAppend(good_bytes, s);
    }
    std::vector<Deferred> deferred;
    {
      absl::MutexLock lock(&mu_);
      ++stats_.writes;
      if (synced) ++stats_.syncs;
      for (Pending& p : batch) {
        if (s.ok()) {
          ++stats_.records;
          if (p.expiry) {
            table_.Expire(p.key);
          } else if (p.is_delete) {
            table_.Erase(p.key);
          } else {
            HC_CHECK_OK(table_.Commit(p.key, "", p.commit, p.time));
          }
        }
        auto it = busy_.find(p.key);
        for (Deferred& d : it->second) deferred.push_back(std::move(d));
        busy_.erase(it);
      }
    }
    for (Pending& p : batch) {
      if (p.done) std::move(p.done)(s);
    }
    for (Deferred& d : deferred) std::move(d)();
  }

  // Writer thread, fsync=interval: the timer's sync.
  void IntervalSync() {
    if (!unsynced_ || absl::Now() < last_sync_ + options_.fsync_interval) return;
    const absl::Time now = absl::Now();
    absl::Status s = ops_.DataSync(fd_, log_path_);
    {
      absl::MutexLock lock(&mu_);
      ++stats_.syncs;
    }
    if (!s.ok()) {
      // The records were acknowledged already (fsync=interval's promise is a
      // process crash); keep them and try again at the next interval.
      HC_LOG(ERROR) << "ledger: interval fdatasync failed: " << s.ToString();
      last_sync_ = now;
      return;
    }
    last_sync_ = now;
    unsynced_ = false;
  }

  // Writer thread: the batch after `good_bytes` failed (reported to its
  // callers), so it must not be in the log: a later acknowledged record of the
  // same round would otherwise be shadowed by it on replay. Cuts the file back
  // and makes the cut durable; when even that fails, the log is poisoned and
  // the ledger refuses every later commit and delete (read-only) rather than
  // acknowledge records after an unknown tail.
  void UndoFailedAppend(uint64_t good_bytes, const absl::Status& why) {
    absl::Status s = ops_.Truncate(fd_, good_bytes, log_path_);
    if (s.ok() && options_.fsync != FsyncPolicy::kNever) s = ops_.DataSync(fd_, log_path_);
    if (s.ok()) {
      log_bytes_ = good_bytes;
      unsynced_ = false;
      HC_LOG(ERROR) << "ledger: an append failed and was cut off the log: " << why.ToString();
      return;
    }
    HC_LOG(ERROR) << "LEDGER IS READ-ONLY: an append to " << log_path_ << " failed ("
                  << why.ToString() << ") and could not be undone (" << s.ToString()
                  << "); commits and deletes are refused until the router restarts and replays";
    absl::MutexLock lock(&mu_);
    poisoned_ = absl::InternalError(absl::StrCat(
        "the ledger log ", log_path_, " is read-only after a failed write: ", why.message()));
  }

  // Writer thread: once the active log outgrows the threshold, rotates it and
  // hands the old segment to the compaction thread.
  void MaybeCompact() {
    bool rotate = false;
    {
      absl::MutexLock lock(&mu_);
      if (compacting_ || stopping_ ||
          log_bytes_ <= std::max<uint64_t>(options_.compact_min_bytes, snapshot_bytes_) ||
          absl::Now() < next_compaction_attempt_) {
        return;
      }
      compacting_ = true;
      rotate = !old_segment_exists_;
    }
    absl::Status s = rotate ? Rotate() : absl::OkStatus();
    absl::MutexLock lock(&mu_);
    if (s.ok()) {
      compaction_requested_ = true;
    } else {
      HC_LOG(ERROR) << "ledger: cannot rotate the log for compaction: " << s.ToString();
      CompactionFailedLocked();
    }
  }

  // Writer thread: ledger.log becomes ledger.log.old; appends go to a new
  // ledger.log. On failure everything stays as it was.
  absl::Status Rotate() {
    if (options_.fsync != FsyncPolicy::kNever && unsynced_) {
      HC_RETURN_IF_ERROR(ops_.DataSync(fd_, log_path_));
      unsynced_ = false;
    }
    HC_RETURN_IF_ERROR(ops_.Rename(log_path_, old_log_path_));
    absl::StatusOr<int> fd = ops_.OpenForAppend(log_path_);
    absl::Status s = fd.status();
    // The new name and the new file must be durable before records in the
    // new file are acknowledged.
    if (s.ok()) s = ops_.SyncDir(options_.dir);
    if (!s.ok()) {
      if (fd.ok()) {
        ops_.Close(*fd);
        (void)ops_.Unlink(log_path_);
      }
      if (absl::Status u = ops_.Rename(old_log_path_, log_path_); !u.ok()) {
        // Appends still go to fd_ (now named ledger.log.old), which replay
        // reads before ledger.log: nothing is lost, but do not compact it.
        HC_LOG(ERROR) << "ledger: cannot undo the log rotation: " << u.ToString();
      }
      return s;
    }
    ops_.Close(fd_);
    fd_ = *fd;
    log_bytes_ = 0;
    absl::MutexLock lock(&mu_);
    old_segment_exists_ = true;
    return absl::OkStatus();
  }

  void CompactionFailedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    compacting_ = false;
    ++stats_.compaction_failures;
    ++consecutive_failures_;
    next_compaction_attempt_ =
        absl::Now() + std::min(absl::Seconds(60), absl::Seconds(1) * consecutive_failures_);
  }

  bool CompactorHasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return compaction_requested_ || stopping_;
  }

  void CompactorLoop() {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &FileLedgerImpl::CompactorHasWork));
        if (!compaction_requested_) return;  // stopping
        compaction_requested_ = false;
      }
      absl::StatusOr<uint64_t> size = CompactOldSegment();
      absl::MutexLock lock(&mu_);
      if (size.ok()) {
        compacting_ = false;
        old_segment_exists_ = false;
        snapshot_bytes_ = *size;
        consecutive_failures_ = 0;
        ++stats_.compactions;
      } else {
        if (!absl::IsCancelled(size.status())) {
          HC_LOG(ERROR) << "ledger compaction failed (retried later): " << size.status().ToString();
        }
        CompactionFailedLocked();
        mu_.Unlock();
        Step(CompactionStep::kFailed);
        mu_.Lock();
      }
    }
  }

  bool Step(CompactionStep step) {
    return !file_options_.on_compaction_step || file_options_.on_compaction_step(step);
  }

  // Compaction thread: ledger.snap + ledger.log.old -> ledger.snap.
  absl::StatusOr<uint64_t> CompactOldSegment() {
    return CompactSegment(ops_,
                          CompactionPaths{options_.dir, snap_path_, snap_tmp_path_, old_log_path_},
                          [this](CompactionStep step) { return Step(step); });
  }

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

}  // namespace

absl::StatusOr<std::unique_ptr<FileLedger>> OpenFileLedger(const LedgerOptions& options,
                                                           FileLedgerOptions file_options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("the file ledger needs a directory");
  auto ledger = std::make_unique<FileLedgerImpl>(options, std::move(file_options));
  HC_RETURN_IF_ERROR(ledger->Open());
  return std::unique_ptr<FileLedger>(std::move(ledger));
}

}  // namespace hc::router
