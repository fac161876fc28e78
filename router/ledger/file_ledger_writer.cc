// The file ledger's writer thread (see file_ledger_impl.h): it batches queued
// mutations into one append (and one fdatasync under fsync=always), applies
// them to the table, answers their callers, and runs expiry sweeps.
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "router/ledger/file_ledger_impl.h"
#include "router/ledger/ledger_files.h"

namespace hc::router::file_ledger_internal {

void FileLedgerImpl::EnqueueExpiryLocked(const std::string& key) {
  Pending p;
  p.key = key;
  p.is_delete = true;
  p.expiry = true;
  p.frame = DeleteRecord(++seq_, key);
  Enqueue(std::move(p));
}

void FileLedgerImpl::SweepLocked() {
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

void FileLedgerImpl::WriterLoop() {
  // A sweep ran whose expiries are not all written yet (options_.on_sweep
  // is told once they are: when the queue has drained).
  bool swept = false;
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
      if (sweeping_ && !stopping_ && absl::Now() >= next_sweep_) {
        SweepLocked();
        swept = true;
      }
      if (queue_.empty() && !stopping_) {
        const bool notify = swept && options_.on_sweep;
        swept = false;
        mu_.Unlock();
        if (notify) options_.on_sweep();
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

void FileLedgerImpl::WriteBatch(std::vector<Pending> batch) {
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
    if (options_.fsync == FsyncPolicy::kAlways ||
        (options_.fsync == FsyncPolicy::kInterval && now - last_sync_ >= options_.fsync_interval)) {
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

void FileLedgerImpl::IntervalSync() {
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

void FileLedgerImpl::UndoFailedAppend(uint64_t good_bytes, const absl::Status& why) {
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

}  // namespace hc::router::file_ledger_internal
