#include "router/ledger/file_ledger.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "router/ledger/file_ledger_impl.h"
#include "router/ledger/ledger_files.h"
#include "router/ledger/ledger_table.h"

namespace hc::router {
namespace file_ledger_internal {

FileLedgerImpl::~FileLedgerImpl() {
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

absl::Status FileLedgerImpl::Open() {
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

void FileLedgerImpl::AcquireLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                                  RecordCallback done) {
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
      busy_[k].push_back([this, key, h = std::string(holder), ttl, d = std::move(done)]() mutable {
        AcquireLease(key, h, ttl, std::move(d));
      });
      return;
    }
    result = table_.AcquireLease(k, holder, now, ttl);
  }
  std::move(done)(std::move(result));
}

void FileLedgerImpl::RenewLease(const LedgerKey& key, std::string_view holder, absl::Duration ttl,
                                StatusCallback done) {
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

void FileLedgerImpl::ReleaseLease(const LedgerKey& key, std::string_view holder,
                                  StatusCallback done) {
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

void FileLedgerImpl::Get(const LedgerKey& key, RecordCallback done) {
  const std::string k = EncodeTableKey(key);
  absl::StatusOr<ConversationRecord> result;
  {
    absl::MutexLock lock(&mu_);
    result = table_.Get(k, clock_());
  }
  std::move(done)(std::move(result));
}

void FileLedgerImpl::Commit(const LedgerKey& key, std::string_view holder, CommitRequest commit,
                            StatusCallback done) {
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

void FileLedgerImpl::Delete(const LedgerKey& key, StatusCallback done) {
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

void FileLedgerImpl::CountConversations(CountCallback done) {
  uint64_t n;
  {
    absl::MutexLock lock(&mu_);
    n = table_.committed();
  }
  std::move(done)(n);
}

}  // namespace file_ledger_internal

absl::StatusOr<std::unique_ptr<FileLedger>> OpenFileLedger(const LedgerOptions& options,
                                                           FileLedgerOptions file_options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("the file ledger needs a directory");
  auto ledger =
      std::make_unique<file_ledger_internal::FileLedgerImpl>(options, std::move(file_options));
  HC_RETURN_IF_ERROR(ledger->Open());
  return std::unique_ptr<FileLedger>(std::move(ledger));
}

}  // namespace hc::router
