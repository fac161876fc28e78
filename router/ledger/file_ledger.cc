#include "router/ledger/file_ledger.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "router/ledger/ledger_table.h"
#include "router/ledger/record_codec.h"
#include "router/ledger/table_ledger.h"

namespace hc::router {
namespace {

constexpr uint8_t kCommitRecord = 1;
constexpr uint8_t kDeleteRecord = 2;
constexpr std::string_view kSnapshotMagic = "HCLSNAP1";

absl::Status Errno(const char* what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("write", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path, bool* exists) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      *exists = false;
      return std::string();
    }
    return Errno("open", path);
  }
  *exists = true;
  std::string data;
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return Errno("read", path);
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return data;
}

void Frame(std::string_view payload, std::string* out) {
  ByteWriter w(out);
  w.U32(static_cast<uint32_t>(payload.size()));
  w.U32(Crc32c(payload));
  out->append(payload);
}

// Next framed payload of `data` at *offset; false at the end or at a torn or
// corrupt record.
bool NextFrame(std::string_view data, size_t* offset, std::string_view* payload) {
  if (data.size() - *offset < 8) return false;
  uint32_t len = 0, crc = 0;
  std::memcpy(&len, data.data() + *offset, 4);
  std::memcpy(&crc, data.data() + *offset + 4, 4);
  if (data.size() - *offset - 8 < len) return false;
  const std::string_view p = data.substr(*offset + 8, len);
  if (Crc32c(p) != crc) return false;
  *payload = p;
  *offset += 8 + len;
  return true;
}

int64_t ToMicros(absl::Time t) {
  return t == absl::InfinitePast() ? INT64_MIN : absl::ToUnixMicros(t);
}
absl::Time FromMicros(int64_t us) {
  return us == INT64_MIN ? absl::InfinitePast() : absl::FromUnixMicros(us);
}

class FileLedger final : public TableLedger {
 public:
  explicit FileLedger(const LedgerOptions& o)
      : TableLedger(o.clock),
        options_(o),
        log_path_(o.dir + "/ledger.log"),
        snap_path_(o.dir + "/ledger.snap") {}
  ~FileLedger() override {
    absl::MutexLock lock(&mu_);
    if (fd_ >= 0) {
      if (options_.fsync != FsyncPolicy::kNever) ::fsync(fd_);
      ::close(fd_);
    }
  }

  absl::Status Open() {
    absl::MutexLock lock(&mu_);
    if (::mkdir(options_.dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return Errno("mkdir", options_.dir);
    }
    HC_RETURN_IF_ERROR(ReplaySnapshot());
    HC_RETURN_IF_ERROR(ReplayLog());
    fd_ = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) return Errno("open", log_path_);
    return absl::OkStatus();
  }

 protected:
  absl::Status PersistCommit(const std::string& k, const CommitRequest& commit,
                             absl::Time now) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::string payload;
    ByteWriter w(&payload);
    w.U8(kCommitRecord);
    w.U64(++seq_);
    w.Bytes(k);
    w.U64(commit.expected_round);
    w.Tokens(commit.appended_tokens);
    w.Messages(commit.appended_messages);
    w.Worker(commit.worker);
    w.U64(static_cast<uint64_t>(ToMicros(now)));
    return Append(payload);
  }

  absl::Status PersistDelete(const std::string& k) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::string payload;
    ByteWriter w(&payload);
    w.U8(kDeleteRecord);
    w.U64(++seq_);
    w.Bytes(k);
    return Append(payload);
  }

  void AfterChange() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { MaybeCompact(); }

 private:
  absl::Status Append(std::string_view payload) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::string record;
    Frame(payload, &record);
    if (absl::Status s = WriteAll(fd_, record, log_path_); !s.ok()) {
      // Cut a partial record off so later appends stay readable.
      if (::ftruncate(fd_, static_cast<off_t>(log_bytes_)) != 0) {
        HC_LOG(ERROR) << "cannot truncate " << log_path_ << ": " << std::strerror(errno);
      }
      return s;
    }
    log_bytes_ += record.size();
    const absl::Time now = absl::Now();
    if (options_.fsync == FsyncPolicy::kAlways ||
        (options_.fsync == FsyncPolicy::kInterval && now - last_sync_ >= options_.fsync_interval)) {
      if (::fdatasync(fd_) != 0) return Errno("fdatasync", log_path_);
      last_sync_ = now;
    }
    return absl::OkStatus();
  }

  void MaybeCompact() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (log_bytes_ <= std::max<uint64_t>(options_.compact_min_bytes, snapshot_bytes_)) return;
    if (absl::Status s = Compact(); !s.ok()) {
      HC_LOG(ERROR) << "ledger compaction failed (the log keeps growing): " << s.ToString();
    }
  }

  // Runs under mu_ (turns wait for it); the snapshot is streamed to disk in
  // 1 MiB pieces, so its size in memory stays bounded.
  absl::Status Compact() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const std::string tmp = snap_path_ + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Errno("open", tmp);
    std::string snap(kSnapshotMagic);
    ByteWriter hw(&snap);
    hw.U64(seq_);
    uint64_t written = 0;
    absl::Status s;
    std::string payload;
    for (const auto& [k, e] : table_.entries()) {
      if (e.round == 0) continue;
      payload.clear();
      ByteWriter w(&payload);
      w.Bytes(k);
      w.U64(e.round);
      w.Tokens(e.tokens);
      w.Messages(e.messages);
      w.Worker(e.worker);
      w.U64(static_cast<uint64_t>(ToMicros(e.last_activity)));
      Frame(payload, &snap);
      if (snap.size() >= (1 << 20)) {
        if (s = WriteAll(fd, snap, tmp); !s.ok()) break;
        written += snap.size();
        snap.clear();
      }
    }
    if (s.ok()) s = WriteAll(fd, snap, tmp);
    written += snap.size();
    if (s.ok() && ::fsync(fd) != 0) s = Errno("fsync", tmp);
    ::close(fd);
    if (!s.ok()) return s;
    if (::rename(tmp.c_str(), snap_path_.c_str()) != 0) return Errno("rename", tmp);
    const int dfd = ::open(options_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
    // The snapshot now holds everything up to seq_; the log can go.
    if (::ftruncate(fd_, 0) != 0) return Errno("truncate", log_path_);
    snapshot_bytes_ = written;
    log_bytes_ = 0;
    return absl::OkStatus();
  }

  absl::Status ReplaySnapshot() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    bool exists = false;
    HC_ASSIGN_OR_RETURN(std::string data, ReadFile(snap_path_, &exists));
    if (!exists) return absl::OkStatus();
    const auto corrupt = [&] { return absl::DataLossError(absl::StrCat("corrupt snapshot ", snap_path_)); };
    if (data.size() < kSnapshotMagic.size() + 8 || data.compare(0, kSnapshotMagic.size(), kSnapshotMagic) != 0) {
      return corrupt();
    }
    std::memcpy(&snapshot_seq_, data.data() + kSnapshotMagic.size(), 8);
    seq_ = snapshot_seq_;
    size_t offset = kSnapshotMagic.size() + 8;
    std::string_view payload;
    while (NextFrame(data, &offset, &payload)) {
      ByteReader r(payload);
      std::string k;
      LedgerTable::Entry e;
      uint64_t activity = 0;
      if (!r.Bytes(&k) || !r.U64(&e.round) || !r.Tokens(&e.tokens) || !r.Messages(&e.messages) ||
          !r.Worker(&e.worker) || !r.U64(&activity) || !r.done()) {
        return corrupt();
      }
      e.last_activity = FromMicros(static_cast<int64_t>(activity));
      table_.Put(k, std::move(e));
    }
    if (offset != data.size()) return corrupt();
    snapshot_bytes_ = data.size();
    return absl::OkStatus();
  }

  absl::Status ReplayLog() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    bool exists = false;
    HC_ASSIGN_OR_RETURN(std::string data, ReadFile(log_path_, &exists));
    if (!exists) return absl::OkStatus();
    size_t offset = 0;
    std::string_view payload;
    uint64_t applied = 0;
    while (true) {
      const size_t at = offset;
      if (!NextFrame(data, &offset, &payload)) break;
      ByteReader r(payload);
      uint8_t type = 0;
      uint64_t seq = 0;
      std::string k;
      bool ok = r.U8(&type) && r.U64(&seq) && r.Bytes(&k);
      if (ok && type == kCommitRecord) {
        CommitRequest c;
        uint64_t activity = 0;
        ok = r.U64(&c.expected_round) && r.Tokens(&c.appended_tokens) &&
             r.Messages(&c.appended_messages) && r.Worker(&c.worker) && r.U64(&activity) && r.done();
        if (ok && seq > snapshot_seq_) {
          // Holder "" skips the lease check; a round mismatch cannot happen
          // for an intact log and is reported, not applied.
          if (absl::Status s = table_.Commit(k, "", c, FromMicros(static_cast<int64_t>(activity)));
              !s.ok()) {
            HC_LOG(WARNING) << "ledger replay skips record " << seq << ": " << s.ToString();
          }
        }
      } else if (ok && type == kDeleteRecord) {
        ok = r.done();
        if (ok && seq > snapshot_seq_) table_.Erase(k);
      } else {
        ok = false;
      }
      if (!ok) {
        offset = at;
        break;
      }
      seq_ = std::max(seq_, seq);
      ++applied;
    }
    if (offset != data.size()) {
      HC_LOG(WARNING) << "ledger log " << log_path_ << ": dropping a torn tail of "
                      << data.size() - offset << " bytes at offset " << offset;
      if (::truncate(log_path_.c_str(), static_cast<off_t>(offset)) != 0) {
        return Errno("truncate", log_path_);
      }
    }
    log_bytes_ = offset;
    HC_LOG(INFO) << "ledger replayed " << applied << " log records from " << log_path_ << ", "
                 << table_.committed() << " conversations";
    return absl::OkStatus();
  }
  const LedgerOptions options_;
  const std::string log_path_;
  const std::string snap_path_;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t snapshot_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t log_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t snapshot_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_sync_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace

absl::StatusOr<std::unique_ptr<ConversationLedger>> OpenFileLedger(const LedgerOptions& options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("the file ledger needs a directory");
  auto ledger = std::make_unique<FileLedger>(options);
  if (absl::Status s = ledger->Open(); !s.ok()) return s;
  return std::unique_ptr<ConversationLedger>(std::move(ledger));
}

}  // namespace hc::router
