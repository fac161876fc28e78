// The file ledger under failures (issue #13): a failed fdatasync, a corrupt
// record in the middle of the log, the interval fsync's loss window, and a
// failing directory fsync during compaction. Each test is the regression
// test of one fix.
#include <filesystem>
#include <fstream>
#include <memory>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "router/ledger/file_ledger.h"
#include "tests/unit/router/ledger/ledger_test_util.h"
#include "tests/unit/router/ledger/test_file_ops.h"

namespace hc::router {
namespace {

using testing::CommitRound;
using testing::ExpectConsistent;
using testing::Key;

class FileLedgerFailureTest : public ::testing::Test {
 protected:
  LedgerOptions Options(FsyncPolicy fsync) {
    LedgerOptions o;
    o.backend = "file";
    o.dir = dir_.path();
    o.fsync = fsync;
    return o;
  }
  absl::StatusOr<std::unique_ptr<FileLedger>> Open(LedgerOptions o, FileLedgerOptions fo = {}) {
    if (fo.file_ops == nullptr) fo.file_ops = &ops_;
    return OpenFileLedger(o, std::move(fo));
  }
  std::string LogPath() const { return dir_.path() + "/ledger.log"; }

  testing::TempDir dir_;
  testing::TestFileOps ops_;
};

TEST_F(FileLedgerFailureTest, AFailedFdatasyncLeavesExactlyTheAcknowledgedTurns) {
  {
    auto ledger = Open(Options(FsyncPolicy::kAlways));
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ASSERT_TRUE(CommitRound(**ledger, 0, 4).ok());  // turn 1
    ops_.FailDataSyncs(1);
    // Turn 2 (8 tokens) is reported failed...
    EXPECT_EQ(CommitRound(**ledger, 0, 8).code(), absl::StatusCode::kInternal);
    // ...and turn 3 (2 tokens), the same round again, is acknowledged.
    ASSERT_TRUE(CommitRound(**ledger, 0, 2).ok());
  }
  auto ledger = Open(Options(FsyncPolicy::kAlways));
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  auto rec = (*ledger)->Get(Key(0));
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->round, 2u);
  EXPECT_EQ(rec->tokens.size(), 4u + 2u);  // turns 1 and 3, not turn 2
}

TEST_F(FileLedgerFailureTest, ACorruptRecordInTheMiddleIsDataLossNotATornTail) {
  constexpr int kConversations = 40;
  {
    auto ledger = Open(Options(FsyncPolicy::kNever));
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    for (int c = 0; c < kConversations; ++c) ASSERT_TRUE(CommitRound(**ledger, c, 16).ok());
  }
  const auto size = std::filesystem::file_size(LogPath());
  const std::streamoff at = static_cast<std::streamoff>(size / 2);
  {
    std::fstream f(LogPath(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(at);
    char b = 0;
    f.read(&b, 1);
    b ^= 0x10;
    f.seekp(at);
    f.write(&b, 1);
  }
  auto ledger = Open(Options(FsyncPolicy::kNever));
  ASSERT_FALSE(ledger.ok()) << "opened a log with a corrupt record in its middle";
  EXPECT_EQ(ledger.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(ledger.status().message().find(LogPath()), std::string::npos) << ledger.status();
  EXPECT_NE(ledger.status().message().find("offset"), std::string::npos) << ledger.status();
  EXPECT_EQ(std::filesystem::file_size(LogPath()), size);  // the damaged file is kept as is
}

TEST_F(FileLedgerFailureTest, ACorruptLengthThatRunsPastTheEndIsNotMistakenForATornTail) {
  {
    auto ledger = Open(Options(FsyncPolicy::kNever));
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    for (int c = 0; c < 10; ++c) ASSERT_TRUE(CommitRound(**ledger, c, 16).ok());
  }
  // The first record's length field gets a high bit: it now claims to run
  // past the end of the file, though nine good records follow it.
  {
    std::fstream f(LogPath(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3);
    const char high = 0x40;
    f.write(&high, 1);
  }
  auto ledger = Open(Options(FsyncPolicy::kNever));
  EXPECT_EQ(ledger.status().code(), absl::StatusCode::kDataLoss) << ledger.status();
}

TEST_F(FileLedgerFailureTest, IntervalFsyncSyncsOnATimerWithoutALaterWrite) {
  LedgerOptions o = Options(FsyncPolicy::kInterval);
  o.fsync_interval = absl::Milliseconds(20);
  auto ledger = Open(o);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  ASSERT_TRUE(CommitRound(**ledger, 0, 4).ok());  // synced at once (first write)
  ASSERT_TRUE(CommitRound(**ledger, 1, 4).ok());  // within the interval: not yet
  // No further write comes; the timer must sync within about one interval.
  EXPECT_TRUE(ops_.WaitForDataSyncs(2, absl::Seconds(10)))
      << "the second commit was never fdatasync'ed (" << ops_.data_syncs() << " syncs)";
}

TEST_F(FileLedgerFailureTest, AFailingDirectoryFsyncAfterTheSnapshotRenameFailsTheCompaction) {
  LedgerOptions o = Options(FsyncPolicy::kNever);
  o.compact_min_bytes = 2048;
  absl::Notification failed;
  bool installed = false;
  FileLedgerOptions fo;
  fo.on_compaction_step = [&](CompactionStep step) {
    if (step == CompactionStep::kSnapshotWritten) ops_.FailSyncDir(true);
    if (step == CompactionStep::kSnapshotInstalled) installed = true;
    if (step == CompactionStep::kFailed && !failed.HasBeenNotified()) failed.Notify();
    return true;
  };
  auto ledger = Open(o, fo);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 4; ++c) ASSERT_TRUE(CommitRound(**ledger, c, 40).ok());
  ASSERT_TRUE(failed.WaitForNotificationWithTimeout(absl::Seconds(30)))
      << "the compaction did not fail although the directory fsync did";
  EXPECT_FALSE(installed);
  EXPECT_GE((*ledger)->stats().compaction_failures, 1u);
  // The old segment stays until a compaction is durable.
  EXPECT_TRUE(std::filesystem::exists(dir_.path() + "/ledger.log.old"));
  ops_.FailSyncDir(false);
  ledger->reset();
  auto reopened = Open(Options(FsyncPolicy::kNever));
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  for (int c = 0; c < 4; ++c) ExpectConsistent(**reopened, c, 40, 5);
}

}  // namespace
}  // namespace hc::router
