// Background compaction: appends go on while a compaction is held, and replay
// is exact after a crash at each compaction step (the files left as that
// crash would leave them).
#include <filesystem>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "router/ledger/file_ledger.h"
#include "tests/unit/router/ledger/ledger_test_util.h"

namespace hc::router {
namespace {

using testing::CommitRound;
using testing::ExpectConsistent;
using testing::Key;

constexpr int kConversations = 4;
constexpr int kTokens = 50;  // ~300-byte records

class FileLedgerCompactionTest : public ::testing::Test {
 protected:
  LedgerOptions Options() {
    LedgerOptions o;
    o.backend = "file";
    o.dir = dir_.path();
    o.fsync = FsyncPolicy::kNever;
    o.compact_min_bytes = 4096;
    return o;
  }
  std::unique_ptr<FileLedger> Open(FileLedgerOptions fo = {}) {
    auto l = OpenFileLedger(Options(), std::move(fo));
    EXPECT_TRUE(l.ok()) << l.status();
    return l.ok() ? std::move(l).value() : nullptr;
  }
  // Commits `rounds` rounds on every conversation; returns false on an error.
  bool CommitRounds(FileLedger& ledger, int rounds) {
    for (int r = 0; r < rounds; ++r) {
      for (int c = 0; c < kConversations; ++c) {
        if (absl::Status s = CommitRound(ledger, c, kTokens); !s.ok()) {
          ADD_FAILURE() << s;
          return false;
        }
        ++rounds_[c];
      }
    }
    return true;
  }
  void ExpectAllRounds(FileLedger& ledger) {
    for (int c = 0; c < kConversations; ++c) {
      ExpectConsistent(ledger, c, kTokens, rounds_[c]);
      EXPECT_EQ(ledger.Get(Key(c))->round, rounds_[c]);
    }
  }
  bool Exists(const char* name) { return std::filesystem::exists(dir_.path() + "/" + name); }

  testing::TempDir dir_;
  uint64_t rounds_[kConversations] = {};
};

TEST_F(FileLedgerCompactionTest, AppendsCompleteWhileACompactionIsHeld) {
  absl::Notification held, release, finished;
  FileLedgerOptions fo;
  fo.on_compaction_step = [&](CompactionStep step) {
    if (step == CompactionStep::kRotated && !held.HasBeenNotified()) {
      held.Notify();
      release.WaitForNotification();
    }
    if (step == CompactionStep::kDone && !finished.HasBeenNotified()) finished.Notify();
    return true;
  };
  auto ledger = Open(fo);
  ASSERT_TRUE(CommitRounds(*ledger, 5));  // > 4096 bytes: rotates
  held.WaitForNotification();
  EXPECT_TRUE(Exists("ledger.log.old"));
  // The compaction thread is stuck; turns are not.
  ASSERT_TRUE(CommitRounds(*ledger, 20));
  EXPECT_EQ(ledger->stats().compactions, 0u);
  ExpectAllRounds(*ledger);
  release.Notify();
  finished.WaitForNotification();
  EXPECT_FALSE(Exists("ledger.log.old"));
  ledger.reset();
  ExpectAllRounds(*Open());
}

// Stops the first compaction after `step` (as a crash there would), writes a
// few more rounds, closes, and checks the replay.
class CrashAtStepTest : public FileLedgerCompactionTest,
                        public ::testing::WithParamInterface<CompactionStep> {};

TEST_P(CrashAtStepTest, ReplayIsExactAndTheCompactionIsFinishedOnOpen) {
  absl::Notification stopped;
  FileLedgerOptions fo;
  fo.on_compaction_step = [&](CompactionStep step) {
    if (step != GetParam()) return true;
    if (!stopped.HasBeenNotified()) stopped.Notify();
    return false;
  };
  {
    auto ledger = Open(fo);
    ASSERT_TRUE(CommitRounds(*ledger, 5));
    stopped.WaitForNotification();
    ASSERT_TRUE(CommitRounds(*ledger, 2));
    ASSERT_TRUE(ledger->Delete(Key(3)).ok());
    rounds_[3] = 0;
    ASSERT_TRUE(CommitRounds(*ledger, 1));
  }
  switch (GetParam()) {
    case CompactionStep::kRotated:
      EXPECT_TRUE(Exists("ledger.log.old"));
      break;
    case CompactionStep::kSnapshotWritten:
      EXPECT_TRUE(Exists("ledger.snap.tmp"));
      EXPECT_TRUE(Exists("ledger.log.old"));
      break;
    case CompactionStep::kSnapshotInstalled:
      EXPECT_TRUE(Exists("ledger.snap"));
      EXPECT_TRUE(Exists("ledger.log.old"));  // its records are in the snapshot too
      break;
    case CompactionStep::kDone:
      EXPECT_FALSE(Exists("ledger.log.old"));
      break;
    case CompactionStep::kFailed:
      FAIL() << "kFailed is not a parameter of this test";
  }
  absl::Notification finished;
  FileLedgerOptions watch;
  watch.on_compaction_step = [&](CompactionStep step) {
    if (step == CompactionStep::kDone && !finished.HasBeenNotified()) finished.Notify();
    return true;
  };
  auto ledger = Open(watch);
  ExpectAllRounds(*ledger);
  if (GetParam() != CompactionStep::kDone) {
    finished.WaitForNotification();  // the interrupted compaction completes
    EXPECT_FALSE(Exists("ledger.log.old"));
  }
  ASSERT_TRUE(CommitRounds(*ledger, 1));
  ledger.reset();
  ExpectAllRounds(*Open());
}

INSTANTIATE_TEST_SUITE_P(Steps, CrashAtStepTest,
                         ::testing::Values(CompactionStep::kRotated,
                                           CompactionStep::kSnapshotWritten,
                                           CompactionStep::kSnapshotInstalled,
                                           CompactionStep::kDone),
                         [](const auto& info) {
                           switch (info.param) {
                             case CompactionStep::kRotated:
                               return "Rotated";
                             case CompactionStep::kSnapshotWritten:
                               return "SnapshotWritten";
                             case CompactionStep::kSnapshotInstalled:
                               return "SnapshotInstalled";
                             case CompactionStep::kDone:
                               return "Done";
                             case CompactionStep::kFailed:
                               return "Failed";
                           }
                           return "Unknown";
                         });

}  // namespace
}  // namespace hc::router
