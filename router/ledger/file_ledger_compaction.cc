// The file ledger's compaction (see file_ledger_impl.h): the writer thread
// rotates an outgrown log segment; the compaction thread folds the old
// segment into the snapshot, retrying with a backoff after a failure.
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "router/ledger/file_ledger_impl.h"
#include "router/ledger/ledger_files.h"

namespace hc::router::file_ledger_internal {

void FileLedgerImpl::MaybeCompact() {
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

absl::Status FileLedgerImpl::Rotate() {
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

void FileLedgerImpl::CompactionFailedLocked() {
  compacting_ = false;
  ++stats_.compaction_failures;
  ++consecutive_failures_;
  next_compaction_attempt_ =
      absl::Now() + std::min(absl::Seconds(60), absl::Seconds(1) * consecutive_failures_);
}

void FileLedgerImpl::CompactorLoop() {
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

absl::StatusOr<uint64_t> FileLedgerImpl::CompactOldSegment() {
  return CompactSegment(ops_,
                        CompactionPaths{options_.dir, snap_path_, snap_tmp_path_, old_log_path_},
                        [this](CompactionStep step) { return Step(step); });
}

}  // namespace hc::router::file_ledger_internal
