// Round usage (ConversationRecord::usage) in every ledger backend: committed
// with its round, read back by Get and AcquireLease, durable across a reopen
// (file: log replay; Redis: the server's keys), and unknown for rounds an
// earlier version committed.
#include <filesystem>
#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "router/ledger/ledger.h"
#include "router/ledger/redis_ledger.h"
#include "tests/unit/router/ledger/redis_server_fixture.h"

namespace hc::router {
namespace {

using ::testing::TestWithParam;
using Usages = std::vector<std::optional<RoundUsage>>;

testing::RedisServer* shared_redis = nullptr;
class RedisEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { shared_redis = new testing::RedisServer(); }
  void TearDown() override {
    delete shared_redis;
    shared_redis = nullptr;
  }
};
const auto* const kRedisEnvironment = ::testing::AddGlobalTestEnvironment(new RedisEnvironment);

class LedgerUsageTest : public TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "redis" && !shared_redis->ok())
      FAIL() << shared_redis->error() << " (scripts/install-deps.sh installs redis-server)";
    if (GetParam() == "file") {
      char tmpl[] = "/tmp/hc-ledger-usage-XXXXXX";
      dir_ = ::mkdtemp(tmpl);
    }
    Reopen();
  }
  void TearDown() override {
    ledger_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    ledger_.reset();
    LedgerOptions o;
    if (GetParam() == "file") {
      o.backend = "file";
      o.dir = dir_;
      o.fsync = FsyncPolicy::kNever;
    } else if (GetParam() == "redis") {
      o.backend = shared_redis->url();
      o.redis_prefix = Prefix();
    }
    auto ledger = OpenLedger(o);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = std::move(ledger).value();
  }
  std::string Prefix() const {
    std::string p =
        absl::StrCat("u:", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    for (char& c : p)
      if (c == '/') c = '_';
    return p;
  }
  bool Durable() const { return GetParam() != "memory"; }

  // One full turn on key_ committing `usage`; `rewrite` replaces the last
  // committed token (a rewrite turn, CommitRequest::rewrite_from).
  absl::Status Turn(std::optional<RoundUsage> usage, bool rewrite = false) {
    auto rec = ledger_->AcquireLease(key_, "h", absl::Seconds(30));
    if (!rec.ok()) return rec.status();
    CommitRequest c;
    c.expected_round = rec->round;
    uint32_t begin = static_cast<uint32_t>(rec->tokens.size());
    if (rewrite && begin > 0) c.rewrite_from = --begin;
    c.appended_tokens = {7, 8};
    c.appended_messages = {LedgerMessage{Role::kUser, begin, begin + 2, "m"}};
    c.worker = WorkerState{"w", rec->round + 1, begin + 1, 42};
    c.usage = usage;
    return ledger_->Commit(key_, "h", c);
  }
  Usages UsageNow() {
    auto rec = ledger_->Get(key_);
    EXPECT_TRUE(rec.ok()) << rec.status();
    return rec.ok() ? rec->usage : Usages{};
  }

  const LedgerKey key_{"salt", "conv"};
  const RoundUsage u1_{10, 0, 4};
  const RoundUsage u2_{20, 13, 5};
  const RoundUsage u3_{31, 24, 6};
  std::string dir_;
  std::unique_ptr<ConversationLedger> ledger_;
};

TEST_P(LedgerUsageTest, EachRoundsUsageIsCommittedWithItAndReadBackAfterAReopen) {
  ASSERT_TRUE(Turn(u1_).ok());
  ASSERT_TRUE(Turn(u2_).ok());
  ASSERT_TRUE(Turn(u3_).ok());
  const Usages want = {u1_, u2_, u3_};
  EXPECT_EQ(UsageNow(), want);
  auto leased = ledger_->AcquireLease(key_, "h", absl::Seconds(30));
  ASSERT_TRUE(leased.ok()) << leased.status();
  EXPECT_EQ(leased->usage, want);
  ASSERT_TRUE(ledger_->ReleaseLease(key_, "h").ok());
  auto rec = ledger_->Get(key_);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(UsageOfRound(*rec, 2), u2_);
  EXPECT_EQ(UsageOfRound(*rec, 0), std::nullopt);
  EXPECT_EQ(UsageOfRound(*rec, 4), std::nullopt);
  if (Durable()) {
    Reopen();
    EXPECT_EQ(UsageNow(), want);
  }
}

TEST_P(LedgerUsageTest, ACommitThatFailsRecordsNoUsage) {
  ASSERT_TRUE(Turn(u1_).ok());
  ASSERT_TRUE(ledger_->AcquireLease(key_, "h", absl::Seconds(30)).ok());
  CommitRequest stale;
  stale.expected_round = 0;  // the round is 1 by now
  stale.appended_tokens = {1};
  stale.usage = u2_;
  EXPECT_EQ(ledger_->Commit(key_, "h", stale).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ledger_->Commit(key_, "not-the-holder", stale).code(), absl::StatusCode::kAborted);
  ASSERT_TRUE(ledger_->ReleaseLease(key_, "h").ok());
  EXPECT_EQ(UsageNow(), Usages{u1_});
  if (Durable()) {
    Reopen();
    EXPECT_EQ(UsageNow(), Usages{u1_});
  }
}

TEST_P(LedgerUsageTest, ARewriteTurnKeepsTheEarlierRoundsUsage) {
  ASSERT_TRUE(Turn(u1_).ok());
  ASSERT_TRUE(Turn(u2_, /*rewrite=*/true).ok());
  ASSERT_TRUE(Turn(u3_, /*rewrite=*/true).ok());
  EXPECT_EQ(UsageNow(), (Usages{u1_, u2_, u3_}));
  if (Durable()) {
    Reopen();
    EXPECT_EQ(UsageNow(), (Usages{u1_, u2_, u3_}));
  }
}

// Rounds committed without a usage (by an earlier version) stay unknown, and
// the rounds after them still record theirs at the right index.
TEST_P(LedgerUsageTest, RoundsWithoutAUsageAreUnknownAndLaterOnesStillRecordTheirs) {
  ASSERT_TRUE(Turn(std::nullopt).ok());
  ASSERT_TRUE(Turn(std::nullopt).ok());
  EXPECT_TRUE(UsageNow().empty()) << "a conversation without usage costs nothing more";
  ASSERT_TRUE(Turn(u3_).ok());
  ASSERT_TRUE(Turn(std::nullopt).ok());
  const Usages want = {std::nullopt, std::nullopt, u3_, std::nullopt};
  EXPECT_EQ(UsageNow(), want);
  auto rec = ledger_->Get(key_);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(UsageOfRound(*rec, 1), std::nullopt);
  EXPECT_EQ(UsageOfRound(*rec, 3), u3_);
  if (Durable()) {
    Reopen();
    EXPECT_EQ(UsageNow(), want);
  }
}

TEST_P(LedgerUsageTest, ADeletedConversationStartsOverWithoutTheOldUsage) {
  ASSERT_TRUE(Turn(u1_).ok());
  ASSERT_TRUE(Turn(u2_).ok());
  ASSERT_TRUE(ledger_->Delete(key_).ok());
  ASSERT_TRUE(Turn(u3_).ok());
  EXPECT_EQ(UsageNow(), Usages{u3_});
  if (Durable()) {
    Reopen();
    EXPECT_EQ(UsageNow(), Usages{u3_});
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, LedgerUsageTest, ::testing::Values("memory", "file", "redis"),
                         [](const auto& info) { return info.param; });

// A conversation an earlier version wrote to Redis has no usage field in its
// hash; it reads with its rounds' usage unknown and records the next one at
// its round. (Made here by removing the field the commits wrote.)
TEST(RedisLedgerUsageTest, AConversationWithoutTheUsageFieldReadsAsUnknownAndGoesOn) {
  ASSERT_TRUE(shared_redis->ok()) << shared_redis->error();
  LedgerOptions o;
  o.backend = shared_redis->url();
  o.redis_prefix = "u:legacy";
  auto ledger = OpenLedger(o);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  const LedgerKey key{"salt", "old"};
  const auto turn = [&](std::optional<RoundUsage> usage) {
    auto rec = (*ledger)->AcquireLease(key, "h", absl::Seconds(30));
    ASSERT_TRUE(rec.ok()) << rec.status();
    CommitRequest c;
    c.expected_round = rec->round;
    c.appended_tokens = {1};
    c.usage = usage;
    ASSERT_TRUE((*ledger)->Commit(key, "h", c).ok());
  };
  turn(RoundUsage{1, 0, 1});
  turn(RoundUsage{2, 1, 1});
  const std::string hash = absl::StrCat("u:legacy:{", absl::BytesToHexString("salt"), ":old}:m");
  ASSERT_EQ(shared_redis->Command("HDEL", hash, "u"), "1");
  auto rec = (*ledger)->Get(key);
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->round, 2u);
  EXPECT_TRUE(rec->usage.empty());
  turn(RoundUsage{3, 2, 1});
  rec = (*ledger)->Get(key);
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->usage, (Usages{std::nullopt, std::nullopt, RoundUsage{3, 2, 1}}));
}

}  // namespace
}  // namespace hc::router
