#include "router/ledger/file_ops.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace hc::router {
namespace {

absl::Status Errno(const char* what, const std::string& path) {
  const int err = errno;
  const std::string msg = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  return err == ENOENT ? absl::NotFoundError(msg) : absl::InternalError(msg);
}

absl::StatusOr<int> OpenWith(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("open", path);
  return fd;
}

}  // namespace

absl::StatusOr<int> FileOps::OpenForAppend(const std::string& path) {
  return OpenWith(path, O_WRONLY | O_CREAT | O_APPEND);
}

absl::StatusOr<int> FileOps::OpenTruncated(const std::string& path) {
  return OpenWith(path, O_WRONLY | O_CREAT | O_TRUNC);
}

absl::Status FileOps::WriteAll(int fd, std::string_view data, const std::string& path) {
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

absl::Status FileOps::DataSync(int fd, const std::string& path) {
  if (::fdatasync(fd) != 0) return Errno("fdatasync", path);
  return absl::OkStatus();
}

absl::Status FileOps::Sync(int fd, const std::string& path) {
  if (::fsync(fd) != 0) return Errno("fsync", path);
  return absl::OkStatus();
}

absl::Status FileOps::Truncate(int fd, uint64_t size, const std::string& path) {
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) return Errno("ftruncate", path);
  return absl::OkStatus();
}

absl::Status FileOps::Rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) return Errno("rename", from + " to " + to);
  return absl::OkStatus();
}

absl::Status FileOps::Unlink(const std::string& path) {
  if (::unlink(path.c_str()) != 0) return Errno("unlink", path);
  return absl::OkStatus();
}

absl::Status FileOps::SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("open", dir);
  absl::Status s;
  if (::fsync(fd) != 0) s = Errno("fsync", dir);
  ::close(fd);
  return s;
}

absl::StatusOr<std::string> FileOps::ReadFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open", path);
  std::string data;
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status s = Errno("read", path);
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return data;
}

void FileOps::Close(int fd) { ::close(fd); }

FileOps& PosixFileOps() {
  static FileOps* const ops = new FileOps();
  return *ops;
}

}  // namespace hc::router
