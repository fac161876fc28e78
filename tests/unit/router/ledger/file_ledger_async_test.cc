// The file ledger's writer thread: group commit, callbacks off the caller's
// thread, reads that never see an unacknowledged commit, and operations on a
// key with a record in flight waiting for it.
#include <atomic>
#include <memory>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "router/ledger/file_ledger.h"
#include "tests/unit/router/ledger/ledger_test_util.h"
#include "tests/unit/router/ledger/test_file_ops.h"

namespace hc::router {
namespace {

using testing::Key;
using testing::RoundCommit;

class FileLedgerAsyncTest : public ::testing::Test {
 protected:
  std::unique_ptr<FileLedger> Open(bool group_commit = true) {
    LedgerOptions o;
    o.backend = "file";
    o.dir = dir_.path();
    o.fsync = FsyncPolicy::kAlways;
    o.clock = [this] { return absl::FromUnixNanos(now_ns_.load()); };
    FileLedgerOptions fo;
    fo.file_ops = &ops_;
    fo.group_commit = group_commit;
    auto l = OpenFileLedger(o, fo);
    EXPECT_TRUE(l.ok()) << l.status();
    return l.ok() ? std::move(l).value() : nullptr;
  }
  void Advance(absl::Duration d) { now_ns_.fetch_add(absl::ToInt64Nanoseconds(d)); }

  // Takes the leases of conversations [0, n) and starts their first commits
  // while the writer is held at its first fdatasync; returns once every
  // commit was queued. `done[c]` is set by conversation c's callback.
  void StartCommitsBehindTheGate(FileLedger& ledger, int n, std::vector<std::atomic<int>>& done,
                                 std::vector<absl::Status>& results) {
    for (int c = 0; c < n; ++c)
      ASSERT_TRUE(ledger.AcquireLease(Key(c), "h", absl::Seconds(30)).ok());
    ops_.CloseGate();
    for (int c = 0; c < n; ++c) {
      ledger.Commit(Key(c), "h", RoundCommit(c, 0, 0, 8), [&, c](absl::Status s) {
        results[c] = s;
        done[c].fetch_add(1);
      });
      if (c == 0) ops_.WaitUntilAtGate();  // the first batch is being synced
    }
  }

  testing::TempDir dir_;
  testing::TestFileOps ops_;
  std::atomic<int64_t> now_ns_{absl::ToUnixNanos(absl::FromUnixSeconds(1'700'000'000))};
};

TEST_F(FileLedgerAsyncTest, ConcurrentCommitsShareOneFdatasync) {
  constexpr int kTurns = 64;
  auto ledger = Open();
  std::vector<std::atomic<int>> done(kTurns);
  std::vector<absl::Status> results(kTurns);
  const int syncs_before = ops_.data_syncs();
  StartCommitsBehindTheGate(*ledger, kTurns, done, results);
  // The caller's thread never waited for the disk: no callback has run.
  for (int c = 0; c < kTurns; ++c) EXPECT_EQ(done[c].load(), 0);
  ops_.OpenGate();
  ledger.reset();  // drains the queue
  for (int c = 0; c < kTurns; ++c) {
    EXPECT_EQ(done[c].load(), 1) << c;
    EXPECT_TRUE(results[c].ok()) << results[c];
  }
  // The first commit's batch, then one batch with the other 63.
  EXPECT_EQ(ops_.data_syncs() - syncs_before, 2);
  auto reopened = Open();
  for (int c = 0; c < kTurns; ++c) EXPECT_EQ(reopened->Get(Key(c))->round, 1u);
}

TEST_F(FileLedgerAsyncTest, WithoutGroupCommitEveryCommitHasItsOwnFdatasync) {
  constexpr int kTurns = 16;
  auto ledger = Open(/*group_commit=*/false);
  std::vector<std::atomic<int>> done(kTurns);
  std::vector<absl::Status> results(kTurns);
  StartCommitsBehindTheGate(*ledger, kTurns, done, results);
  ops_.OpenGate();
  ledger.reset();
  for (int c = 0; c < kTurns; ++c) EXPECT_TRUE(results[c].ok()) << results[c];
  EXPECT_EQ(ops_.data_syncs(), kTurns);
}

TEST_F(FileLedgerAsyncTest, StatsCountRecordsWritesAndSyncs) {
  auto ledger = Open();
  for (int c = 0; c < 3; ++c) ASSERT_TRUE(testing::CommitRound(*ledger, c, 4).ok());
  const FileLedgerStats s = ledger->stats();
  EXPECT_EQ(s.records, 3u);
  EXPECT_EQ(s.writes, 3u);  // blocking commits: one at a time
  EXPECT_EQ(s.syncs, 3u);
}

TEST_F(FileLedgerAsyncTest, GetDoesNotSeeACommitUntilItIsDurable) {
  auto ledger = Open();
  std::vector<std::atomic<int>> done(1);
  std::vector<absl::Status> results(1);
  ASSERT_TRUE(testing::CommitRound(*ledger, 0, 8).ok());  // round 1 durable
  ASSERT_TRUE(ledger->AcquireLease(Key(0), "h", absl::Seconds(30)).ok());
  ops_.CloseGate();
  ledger->Commit(Key(0), "h", RoundCommit(0, 1, 8, 8), [&](absl::Status s) {
    results[0] = s;
    done[0].fetch_add(1);
  });
  ops_.WaitUntilAtGate();
  EXPECT_EQ(ledger->Get(Key(0))->round, 1u);  // round 2 is not synced yet
  EXPECT_EQ(*ledger->CountConversations(), 1u);
  ops_.OpenGate();
  ledger.reset();
  EXPECT_EQ(done[0].load(), 1);
  EXPECT_TRUE(results[0].ok());
}

TEST_F(FileLedgerAsyncTest, AnExpiredLeaseIsNotTakenOverUnderAPendingCommit) {
  auto ledger = Open();
  ASSERT_TRUE(ledger->AcquireLease(Key(0), "a", absl::Seconds(10)).ok());
  ops_.CloseGate();
  absl::Status committed;
  ledger->Commit(Key(0), "a", RoundCommit(0, 0, 0, 8), [&](absl::Status s) { committed = s; });
  ops_.WaitUntilAtGate();
  Advance(absl::Seconds(11));  // a's lease expired while its commit is being synced
  absl::StatusOr<ConversationRecord> taken;
  absl::Notification took;
  ledger->AcquireLease(Key(0), "b", absl::Seconds(10), [&](absl::StatusOr<ConversationRecord> r) {
    taken = std::move(r);
    took.Notify();
  });
  EXPECT_FALSE(took.HasBeenNotified());  // waits for the commit
  ops_.OpenGate();
  took.WaitForNotification();
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(taken->round, 1u);  // b sees a's commit, not the round before it
  EXPECT_TRUE(committed.ok());
}

TEST_F(FileLedgerAsyncTest, APendingDeleteHoldsTheEntryUntilItIsDurable) {
  auto ledger = Open();
  ASSERT_TRUE(testing::CommitRound(*ledger, 0, 8).ok());
  ops_.CloseGate();
  absl::Notification deleted;
  absl::Status delete_status;
  ledger->Delete(Key(0), [&](absl::Status s) {
    delete_status = s;
    deleted.Notify();
  });
  ops_.WaitUntilAtGate();
  // Still readable (the delete is not acknowledged), but no new turn starts
  // on the entry being deleted: it waits, then starts a new conversation.
  EXPECT_EQ(ledger->Get(Key(0))->round, 1u);
  absl::StatusOr<ConversationRecord> leased;
  absl::Notification took;
  ledger->AcquireLease(Key(0), "b", absl::Seconds(10), [&](absl::StatusOr<ConversationRecord> r) {
    leased = std::move(r);
    took.Notify();
  });
  absl::Status second_delete;
  absl::Notification second;
  ledger->Delete(Key(0), [&](absl::Status s) {
    second_delete = s;
    second.Notify();
  });
  EXPECT_FALSE(took.HasBeenNotified());
  ops_.OpenGate();
  deleted.WaitForNotification();
  took.WaitForNotification();
  second.WaitForNotification();
  EXPECT_TRUE(delete_status.ok());
  ASSERT_TRUE(leased.ok());
  EXPECT_EQ(leased->round, 0u);
  EXPECT_TRUE(leased->tokens.empty());
  EXPECT_EQ(second_delete.code(), absl::StatusCode::kNotFound);
}

TEST_F(FileLedgerAsyncTest, ACommitRepeatedWhileItsFirstIsPendingIsRefused) {
  auto ledger = Open();
  ASSERT_TRUE(ledger->AcquireLease(Key(0), "a", absl::Seconds(10)).ok());
  ops_.CloseGate();
  absl::Status first, second;
  absl::Notification second_done;
  ledger->Commit(Key(0), "a", RoundCommit(0, 0, 0, 8), [&](absl::Status s) { first = s; });
  ops_.WaitUntilAtGate();
  ledger->Commit(Key(0), "a", RoundCommit(0, 0, 0, 8), [&](absl::Status s) {
    second = s;
    second_done.Notify();
  });
  ops_.OpenGate();
  second_done.WaitForNotification();
  EXPECT_TRUE(first.ok());
  EXPECT_EQ(second.code(), absl::StatusCode::kAborted);  // the lease went with the first
  EXPECT_EQ(ledger->Get(Key(0))->round, 1u);
}

}  // namespace
}  // namespace hc::router
