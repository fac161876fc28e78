// The file system calls the file ledger makes, behind an interface so tests
// can inject failures (EIO on fdatasync, a failing directory fsync) and count
// syncs. PosixFileOps is the real thing; every method maps errno to INTERNAL
// with the path in the message.
//
// Thread-safety: PosixFileOps is stateless and thread-safe; an injected
// implementation must be thread-safe too (the ledger's writer and compaction
// threads call it concurrently, on different files).
#ifndef HC_ROUTER_LEDGER_FILE_OPS_H_
#define HC_ROUTER_LEDGER_FILE_OPS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hc::router {

class FileOps {
 public:
  virtual ~FileOps() = default;
  // open(2) for appending (O_CREAT | O_APPEND) or for writing a new file
  // (O_CREAT | O_TRUNC); returns the fd.
  virtual absl::StatusOr<int> OpenForAppend(const std::string& path);
  virtual absl::StatusOr<int> OpenTruncated(const std::string& path);
  // write(2) until all of `data` is written (EINTR retried).
  virtual absl::Status WriteAll(int fd, std::string_view data, const std::string& path);
  virtual absl::Status DataSync(int fd, const std::string& path);                 // fdatasync(2)
  virtual absl::Status Sync(int fd, const std::string& path);                     // fsync(2)
  virtual absl::Status Truncate(int fd, uint64_t size, const std::string& path);  // ftruncate(2)
  virtual absl::Status Rename(const std::string& from, const std::string& to);
  virtual absl::Status Unlink(const std::string& path);  // NOT_FOUND when absent
  // fsync(2) of a directory, so renames and unlinks in it are durable.
  virtual absl::Status SyncDir(const std::string& dir);
  // The whole file; NOT_FOUND when it does not exist.
  virtual absl::StatusOr<std::string> ReadFile(const std::string& path);
  virtual void Close(int fd);
};

// The process-wide real implementation (never destroyed).
FileOps& PosixFileOps();

}  // namespace hc::router

#endif  // HC_ROUTER_LEDGER_FILE_OPS_H_
