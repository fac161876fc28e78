// A FileOps for tests: counts calls, can hold fdatasync at a gate (so a test
// decides when the writer thread's batch completes) and can fail chosen calls.
#ifndef HC_TESTS_UNIT_ROUTER_LEDGER_TEST_FILE_OPS_H_
#define HC_TESTS_UNIT_ROUTER_LEDGER_TEST_FILE_OPS_H_

#include <atomic>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "router/ledger/file_ops.h"

namespace hc::router::testing {

class TestFileOps : public FileOps {
 public:
  // The next fdatasync blocks until Open() of the gate; Entered() tells when
  // the writer reached it.
  void CloseGate() {
    absl::MutexLock lock(&mu_);
    gate_closed_ = true;
    entered_ = false;
  }
  void OpenGate() {
    absl::MutexLock lock(&mu_);
    gate_closed_ = false;
  }
  void WaitUntilAtGate() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&entered_));
  }

  // The next `n` fdatasyncs (after `skip` more succeed) fail with EIO.
  void FailDataSyncs(int n, int skip = 0) {
    fail_syncs_ = n;
    skip_syncs_ = skip;
  }
  // Directory fsyncs fail with EIO while set.
  void FailSyncDir(bool fail) { fail_sync_dir_ = fail; }

  int data_syncs() const { return data_syncs_.load(); }
  // Waits (at most `timeout`, so a missing sync fails instead of hanging)
  // until `n` fdatasyncs completed.
  bool WaitForDataSyncs(int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    sync_target_ = n;
    return mu_.AwaitWithTimeout(absl::Condition(
                                    +[](TestFileOps* o) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                      return o->completed_syncs_ >= o->sync_target_;
                                    },
                                    this),
                                timeout);
  }

  absl::Status DataSync(int fd, const std::string& path) override {
    ++data_syncs_;
    {
      absl::MutexLock lock(&mu_);
      entered_ = true;
      mu_.Await(absl::Condition(
          +[](bool* closed) { return !*closed; }, &gate_closed_));
    }
    if (skip_syncs_.load() > 0) {
      --skip_syncs_;
    } else if (fail_syncs_.load() > 0) {
      --fail_syncs_;
      return absl::InternalError("fdatasync " + path + ": Input/output error (injected)");
    }
    absl::Status s = FileOps::DataSync(fd, path);
    absl::MutexLock lock(&mu_);
    ++completed_syncs_;
    return s;
  }

  absl::Status SyncDir(const std::string& dir) override {
    if (fail_sync_dir_.load())
      return absl::InternalError("fsync " + dir + ": Input/output error (injected)");
    return FileOps::SyncDir(dir);
  }

 private:
  absl::Mutex mu_;
  bool gate_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool entered_ ABSL_GUARDED_BY(mu_) = false;
  int completed_syncs_ ABSL_GUARDED_BY(mu_) = 0;
  int sync_target_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int> data_syncs_{0};
  std::atomic<int> fail_syncs_{0};
  std::atomic<int> skip_syncs_{0};
  std::atomic<bool> fail_sync_dir_{false};
};

}  // namespace hc::router::testing

#endif  // HC_TESTS_UNIT_ROUTER_LEDGER_TEST_FILE_OPS_H_
