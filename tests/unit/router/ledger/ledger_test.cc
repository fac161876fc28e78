// Conformance tests every ledger backend passes: memory, file and Redis (a
// real redis-server started on loopback for this binary).
#include "router/ledger/ledger.h"

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <thread>

#include "absl/synchronization/barrier.h"
#include "common/retry_delay.h"
#include "gtest/gtest.h"
#include "router/ledger/ledger_table.h"
#include "router/ledger/redis_ledger.h"
#include "tests/unit/router/ledger/redis_server_fixture.h"
#include "tests/unit/router/ledger/sweep_waiter.h"

namespace hc::router {
namespace {

using ::testing::TestWithParam;

// One redis-server for the whole binary (stopped when the tests end); each
// test uses its own key prefix.
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
testing::RedisServer* SharedRedis() { return shared_redis; }

TEST(TableKeyTest, TheEmptyTenantEncodesAsBeforeTenantsAndEveryKeyRoundTrips) {
  // Before tenants: u32 salt length (host order), salt, id. Old file ledgers
  // hold exactly these bytes.
  const std::string legacy = std::string("\x04\x00\x00\x00", 4) + "saltconv";
  EXPECT_EQ(EncodeTableKey(LedgerKey{"salt", "conv"}), legacy);
  for (const LedgerKey& k :
       {LedgerKey{"salt", "conv"}, LedgerKey{"", "c"}, LedgerKey{"s", "c", "t"},
        LedgerKey{std::string("a\0b", 3), "c:1", std::string("x\0y", 3)}}) {
    const LedgerKey back = DecodeTableKey(EncodeTableKey(k));
    EXPECT_EQ(back.cache_salt, k.cache_salt);
    EXPECT_EQ(back.conversation_id, k.conversation_id);
    EXPECT_EQ(back.tenant, k.tenant);
  }
  // A tenant never encodes like some other untenanted key.
  EXPECT_NE(EncodeTableKey(LedgerKey{"s", "c", "t"}), EncodeTableKey(LedgerKey{"s", "tc"}));
  EXPECT_NE(EncodeTableKey(LedgerKey{"s", "c", "t"}), EncodeTableKey(LedgerKey{"s", "c", "u"}));
}

class LedgerTest : public TestWithParam<std::string> {
 protected:
  void SetUp() override {
    now_ = absl::FromUnixSeconds(1'700'000'000);
    LedgerOptions o = Options();
    // Fail, not skip: a missing server must not pass as a green run.
    if (GetParam() == "redis" && !SharedRedis()->ok())
      FAIL() << SharedRedis()->error() << " (scripts/install-deps.sh installs redis-server)";
    auto ledger = Open(o);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = std::move(ledger).value();
  }
  // Redis keeps time itself: the fake clock's advance is added to it.
  absl::StatusOr<std::unique_ptr<ConversationLedger>> Open(const LedgerOptions& o) {
    if (GetParam() != "redis") return OpenLedger(o);
    RedisLedgerHooks hooks;
    hooks.clock_offset = [this] { return absl::FromUnixNanos(now_ns_.load()) - now_; };
    auto ledger = OpenRedisLedger(o, std::move(hooks));
    if (!ledger.ok()) return ledger.status();
    return std::unique_ptr<ConversationLedger>(std::move(ledger).value());
  }
  void TearDown() override {
    ledger_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  LedgerOptions Options() {
    LedgerOptions o;
    o.clock = [this] { return absl::FromUnixNanos(now_ns_.load()); };
    now_ns_.store(absl::ToUnixNanos(now_));
    if (GetParam() == "file") {
      if (dir_.empty()) {
        char tmpl[] = "/tmp/hc-ledger-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
      }
      o.backend = "file";
      o.dir = dir_;
      o.fsync = FsyncPolicy::kNever;
    } else if (GetParam() == "redis") {
      o.backend = SharedRedis()->url();
      o.redis_prefix =
          std::string("t:") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
      for (char& c : o.redis_prefix)
        if (c == '/') c = '_';
    }
    o.expiry_sweep_interval = absl::Milliseconds(1);
    o.on_sweep = sweeps_.Hook();
    return o;
  }
  bool IsRedis() const { return GetParam() == "redis"; }
  // Options with an idle expiry: an hour on the fake clock (memory, file), or
  // a second of Redis's real time (it expires keys itself).
  LedgerOptions TtlOptions() {
    LedgerOptions o = Options();
    o.conversation_ttl = IsRedis() ? absl::Seconds(1) : absl::Hours(1);
    return o;
  }
  void Reopen(const LedgerOptions& o) {
    ledger_.reset();
    auto ledger = Open(o);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = std::move(ledger).value();
  }
  // Lets the TTL pass: the fake clock jumps (memory, file); for Redis real
  // time passes while the callers wait on the ledger's state.
  void PassTheTtl() {
    if (!IsRedis()) Advance(absl::Hours(1) + absl::Seconds(1));
  }
  // Waits (bounded) until `done`: memory and file re-check after each of
  // their sweeps; Redis, an external process expiring keys in its real time,
  // is polled.
  bool Eventually(const std::function<bool()>& done) {
    if (!IsRedis()) return sweeps_.WaitUntil(done);
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (!done()) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(2));
    }
    return true;
  }
  absl::Status FullTurn(const LedgerKey& key, const std::string& holder) {
    auto rec = ledger_->AcquireLease(key, holder, absl::Seconds(30));
    if (!rec.ok()) return rec.status();
    return ledger_->Commit(key, holder,
                           Turn(rec->round, {1}, "m", static_cast<uint32_t>(rec->tokens.size())));
  }
  void Advance(absl::Duration d) { now_ns_.fetch_add(absl::ToInt64Nanoseconds(d)); }

  static CommitRequest Turn(uint64_t round, std::vector<uint32_t> tokens, std::string text,
                            uint32_t begin, std::string worker = "w1") {
    CommitRequest c;
    c.expected_round = round;
    c.appended_tokens = tokens;
    c.appended_messages = {LedgerMessage{
        Role::kUser, begin, begin + static_cast<uint32_t>(tokens.size()), std::move(text)}};
    c.worker = WorkerState{std::move(worker), round + 1,
                           begin + static_cast<uint32_t>(tokens.size()) - 1, 42};
    return c;
  }

  testing::SweepWaiter sweeps_;  // outlives ledger_
  absl::Time now_;
  std::atomic<int64_t> now_ns_{0};
  std::string dir_;
  std::unique_ptr<ConversationLedger> ledger_;
  const LedgerKey key_{"salt", "conv-1"};
};

TEST_P(LedgerTest, NewConversationStartsAtRoundZeroAndIsNotFoundUntilCommitted) {
  auto rec = ledger_->AcquireLease(key_, "a", absl::Seconds(10));
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->round, 0u);
  EXPECT_TRUE(rec->tokens.empty());
  EXPECT_EQ(ledger_->Get(key_).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(ledger_->ReleaseLease(key_, "a").ok());
  EXPECT_EQ(ledger_->Get(key_).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*ledger_->CountConversations(), 0u);
}

TEST_P(LedgerTest, CommitAppendsTokensMessagesWorkerAndReleasesTheLease) {
  ASSERT_TRUE(ledger_->AcquireLease(key_, "a", absl::Seconds(10)).ok());
  ASSERT_TRUE(ledger_->Commit(key_, "a", Turn(0, {1, 2, 3}, "hi", 0)).ok());
  ASSERT_TRUE(ledger_->AcquireLease(key_, "b", absl::Seconds(10)).ok());  // lease was released
  ASSERT_TRUE(ledger_->Commit(key_, "b", Turn(1, {4, 5}, "again", 3, "w2")).ok());
  auto rec = ledger_->Get(key_);
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->round, 2u);
  EXPECT_EQ(rec->tokens, (std::vector<uint32_t>{1, 2, 3, 4, 5}));
  ASSERT_EQ(rec->messages.size(), 2u);
  EXPECT_EQ(rec->messages[1], (LedgerMessage{Role::kUser, 3, 5, "again"}));
  EXPECT_EQ(rec->worker, (WorkerState{"w2", 2, 4, 42}));
  EXPECT_TRUE(rec->lease.holder.empty());
  EXPECT_EQ(*ledger_->CountConversations(), 1u);
}

TEST_P(LedgerTest, HeldLeaseAbortsOthersUntilItExpiresThenIsTakenOver) {
  ASSERT_TRUE(ledger_->AcquireLease(key_, "a", absl::Seconds(10)).ok());
  EXPECT_EQ(ledger_->AcquireLease(key_, "b", absl::Seconds(10)).status().code(),
            absl::StatusCode::kAborted);
  Advance(absl::Seconds(11));
  ASSERT_TRUE(ledger_->AcquireLease(key_, "b", absl::Seconds(10)).ok());
  // The old holder lost the lease: its commit changes nothing.
  EXPECT_EQ(ledger_->Commit(key_, "a", Turn(0, {1}, "x", 0)).code(), absl::StatusCode::kAborted);
  ASSERT_TRUE(ledger_->Commit(key_, "b", Turn(0, {7}, "y", 0)).ok());
  EXPECT_EQ(ledger_->Get(key_)->tokens, (std::vector<uint32_t>{7}));
}

TEST_P(LedgerTest, CommitOfTheWrongRoundFailsAndChangesNothing) {
  ASSERT_TRUE(ledger_->AcquireLease(key_, "a", absl::Seconds(10)).ok());
  ASSERT_TRUE(ledger_->Commit(key_, "a", Turn(0, {1, 2}, "m", 0)).ok());
  ASSERT_TRUE(ledger_->AcquireLease(key_, "a", absl::Seconds(10)).ok());
  EXPECT_EQ(ledger_->Commit(key_, "a", Turn(0, {3}, "n", 2)).code(),
            absl::StatusCode::kFailedPrecondition);
  auto rec = ledger_->Get(key_);
  EXPECT_EQ(rec->round, 1u);
  EXPECT_EQ(rec->tokens, (std::vector<uint32_t>{1, 2}));
}

// A rewrite turn: the chat template re-rendered the last reply, so the
// commit keeps the tokens up to its boundary and replaces the rest, and the
// replacement survives a reopen (file: replay of the rewrite record; Redis:
// the server's keys).
TEST_P(LedgerTest, ARewriteCommitReplacesTokensAndMessagesFromItsBoundary) {
  ASSERT_TRUE(ledger_->AcquireLease(key_, "a", absl::Seconds(10)).ok());
  CommitRequest first = Turn(0, {1, 2, 3, 4, 5, 6}, "u1", 0);
  first.appended_messages = {LedgerMessage{Role::kUser, 0, 3, "u1"},
                             LedgerMessage{Role::kAssistant, 4, 6, "r1"}};
  ASSERT_TRUE(ledger_->Commit(key_, "a", first).ok());
  ASSERT_TRUE(ledger_->AcquireLease(key_, "b", absl::Seconds(10)).ok());
  CommitRequest rewrite;
  rewrite.expected_round = 1;
  rewrite.rewrite_from = 3;
  rewrite.appended_tokens = {9, 8, 7, 10, 11};
  rewrite.appended_messages = {LedgerMessage{Role::kAssistant, 3, 5, "r1"},
                               LedgerMessage{Role::kUser, 5, 8, "u2"}};
  rewrite.worker = WorkerState{"w2", 2, 7, 43};
  ASSERT_TRUE(ledger_->Commit(key_, "b", rewrite).ok());
  const auto check = [&] {
    auto rec = ledger_->Get(key_);
    ASSERT_TRUE(rec.ok()) << rec.status();
    EXPECT_EQ(rec->round, 2u);
    EXPECT_EQ(rec->tokens, (std::vector<uint32_t>{1, 2, 3, 9, 8, 7, 10, 11}));
    EXPECT_EQ(rec->messages, (std::vector<LedgerMessage>{{Role::kUser, 0, 3, "u1"},
                                                         {Role::kAssistant, 3, 5, "r1"},
                                                         {Role::kUser, 5, 8, "u2"}}));
    EXPECT_EQ(rec->worker, (WorkerState{"w2", 2, 7, 43}));
    EXPECT_TRUE(rec->lease.holder.empty());
  };
  check();
  if (GetParam() != "memory") {
    Reopen(Options());
    check();
  }
  // And the conversation appends after it as usual.
  ASSERT_TRUE(ledger_->AcquireLease(key_, "c", absl::Seconds(10)).ok());
  ASSERT_TRUE(ledger_->Commit(key_, "c", Turn(2, {12}, "u3", 8)).ok());
  EXPECT_EQ(ledger_->Get(key_)->tokens.size(), 9u);
  EXPECT_EQ(ledger_->Get(key_)->messages.size(), 4u);
}

TEST_P(LedgerTest, ARewriteFromZeroReplacesTheWholeConversation) {
  ASSERT_TRUE(ledger_->AcquireLease(key_, "a", absl::Seconds(10)).ok());
  ASSERT_TRUE(ledger_->Commit(key_, "a", Turn(0, {1, 2, 3}, "m", 0)).ok());
  ASSERT_TRUE(ledger_->AcquireLease(key_, "a", absl::Seconds(10)).ok());
  CommitRequest rewrite = Turn(1, {5, 6}, "n", 0);
  rewrite.rewrite_from = 0;
  ASSERT_TRUE(ledger_->Commit(key_, "a", rewrite).ok());
  auto rec = ledger_->Get(key_);
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->round, 2u);
  EXPECT_EQ(rec->tokens, (std::vector<uint32_t>{5, 6}));
  EXPECT_EQ(rec->messages, (std::vector<LedgerMessage>{{Role::kUser, 0, 2, "n"}}));
}

TEST_P(LedgerTest, ARewritePastTheCommittedTokensIsInvalidAndChangesNothing) {
  ASSERT_TRUE(ledger_->AcquireLease(key_, "a", absl::Seconds(10)).ok());
  ASSERT_TRUE(ledger_->Commit(key_, "a", Turn(0, {1, 2}, "m", 0)).ok());
  ASSERT_TRUE(ledger_->AcquireLease(key_, "a", absl::Seconds(10)).ok());
  CommitRequest rewrite = Turn(1, {3}, "n", 3);
  rewrite.rewrite_from = 3;
  const absl::Status s = ledger_->Commit(key_, "a", rewrite);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("past the conversation's 2 committed tokens"), std::string::npos) << s;
  auto rec = ledger_->Get(key_);
  EXPECT_EQ(rec->round, 1u);
  EXPECT_EQ(rec->tokens, (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(rec->messages.size(), 1u);
  // The lease is still the turn's: it may commit properly or give it back.
  ASSERT_TRUE(ledger_->ReleaseLease(key_, "a").ok());
}

TEST_P(LedgerTest, ReleaseWithoutCommitKeepsTheCommittedEntry) {
  ASSERT_TRUE(ledger_->AcquireLease(key_, "a", absl::Seconds(10)).ok());
  ASSERT_TRUE(ledger_->Commit(key_, "a", Turn(0, {1, 2}, "m", 0)).ok());
  ASSERT_TRUE(ledger_->AcquireLease(key_, "a", absl::Seconds(10)).ok());
  ASSERT_TRUE(ledger_->ReleaseLease(key_, "other").ok());  // not the holder: no-op
  EXPECT_EQ(ledger_->AcquireLease(key_, "b", absl::Seconds(10)).status().code(),
            absl::StatusCode::kAborted);
  ASSERT_TRUE(ledger_->ReleaseLease(key_, "a").ok());
  auto rec = ledger_->AcquireLease(key_, "b", absl::Seconds(10));
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->round, 1u);
  EXPECT_EQ(rec->tokens, (std::vector<uint32_t>{1, 2}));
}

TEST_P(LedgerTest, DeleteForgetsAndIsRefusedWhileATurnHoldsTheLease) {
  EXPECT_EQ(ledger_->Delete(key_).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(ledger_->AcquireLease(key_, "a", absl::Seconds(10)).ok());
  ASSERT_TRUE(ledger_->Commit(key_, "a", Turn(0, {1}, "m", 0)).ok());
  ASSERT_TRUE(ledger_->AcquireLease(key_, "a", absl::Seconds(10)).ok());
  EXPECT_EQ(ledger_->Delete(key_).code(), absl::StatusCode::kAborted);
  ASSERT_TRUE(ledger_->ReleaseLease(key_, "a").ok());
  ASSERT_TRUE(ledger_->Delete(key_).ok());
  EXPECT_EQ(ledger_->Get(key_).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*ledger_->CountConversations(), 0u);
  // A deleted conversation starts over at round 0.
  auto rec = ledger_->AcquireLease(key_, "b", absl::Seconds(10));
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->round, 0u);
  EXPECT_TRUE(rec->tokens.empty());
}

TEST_P(LedgerTest, SaltsAreSeparateNamespaces) {
  const LedgerKey other{"other-salt", key_.conversation_id};
  const LedgerKey binary{std::string("\0\x01{}", 4), key_.conversation_id};
  ASSERT_TRUE(ledger_->AcquireLease(key_, "a", absl::Seconds(10)).ok());
  // Same id, other salts: independent leases and entries.
  ASSERT_TRUE(ledger_->AcquireLease(other, "b", absl::Seconds(10)).ok());
  ASSERT_TRUE(ledger_->AcquireLease(binary, "c", absl::Seconds(10)).ok());
  ASSERT_TRUE(ledger_->Commit(key_, "a", Turn(0, {1}, "a", 0)).ok());
  ASSERT_TRUE(ledger_->Commit(binary, "c", Turn(0, {3, 4}, "c", 0)).ok());
  EXPECT_EQ(ledger_->Get(other).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ledger_->Get(binary)->tokens, (std::vector<uint32_t>{3, 4}));
  EXPECT_EQ(ledger_->Get(key_)->tokens, (std::vector<uint32_t>{1}));
  EXPECT_EQ(*ledger_->CountConversations(), 2u);
}

TEST_P(LedgerTest, ConcurrentTurnsOnOneConversationLetExactlyOneThrough) {
  constexpr int kThreads = 8;
  for (int trial = 0; trial < 5; ++trial) {
    // All threads try at once; the winner commits only after every attempt,
    // so a late thread cannot take a lease that was already given back.
    absl::Barrier* start = new absl::Barrier(kThreads);
    std::atomic<int> won{0}, aborted{0};
    std::string winner;
    uint64_t round = 0;
    size_t num_tokens = 0;
    absl::Mutex mu;
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        const std::string holder = "h" + std::to_string(trial) + "-" + std::to_string(i);
        if (start->Block()) delete start;
        auto rec = ledger_->AcquireLease(key_, holder, absl::Seconds(10));
        if (!rec.ok()) {
          EXPECT_EQ(rec.status().code(), absl::StatusCode::kAborted);
          ++aborted;
          return;
        }
        ++won;
        absl::MutexLock lock(&mu);
        winner = holder;
        round = rec->round;
        num_tokens = rec->tokens.size();
      });
    }
    for (auto& t : threads) t.join();
    ASSERT_TRUE(ledger_
                    ->Commit(key_, winner,
                             Turn(round, {static_cast<uint32_t>(trial)}, "t",
                                  static_cast<uint32_t>(num_tokens)))
                    .ok());
    EXPECT_EQ(won.load(), 1) << "trial " << trial;
    EXPECT_EQ(aborted.load(), kThreads - 1);
  }
  EXPECT_EQ(ledger_->Get(key_)->round, 5u);
}

TEST_P(LedgerTest, IdleConversationIsForgottenAfterTheTtlAndStartsOver) {
  Reopen(TtlOptions());
  ASSERT_TRUE(FullTurn(key_, "a").ok());
  ASSERT_TRUE(ledger_->Get(key_).ok());
  PassTheTtl();
  ASSERT_TRUE(Eventually([&] { return absl::IsNotFound(ledger_->Get(key_).status()); }));
  EXPECT_TRUE(Eventually([&] { return *ledger_->CountConversations() == 0; }));
  EXPECT_EQ(ledger_->Delete(key_).code(), absl::StatusCode::kNotFound);
  auto rec = ledger_->AcquireLease(key_, "b", absl::Seconds(30));
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->round, 0u);
  EXPECT_TRUE(rec->tokens.empty());
  EXPECT_EQ(ledger_->counters().conversations_expired, 1u);
}

TEST_P(LedgerTest, WithoutATtlNothingExpires) {
  ASSERT_TRUE(FullTurn(key_, "a").ok());
  Advance(absl::Hours(24 * 365));
  EXPECT_TRUE(ledger_->Get(key_).ok());
  EXPECT_EQ(*ledger_->CountConversations(), 1u);
  EXPECT_EQ(ledger_->counters().conversations_expired, 0u);
}

TEST_P(LedgerTest, ALeasedConversationIsNotExpiredUnderItsTurn) {
  Reopen(TtlOptions());
  const LedgerKey idle{"salt", "idle"};
  ASSERT_TRUE(FullTurn(key_, "a").ok());
  ASSERT_TRUE(FullTurn(idle, "a").ok());
  auto rec = ledger_->AcquireLease(key_, "turn", absl::Hours(10));
  ASSERT_TRUE(rec.ok()) << rec.status();
  PassTheTtl();
  // The idle one is gone; the leased one stays until its turn commits.
  // Redis expires the keys in its own time and counts by the sorted sets'
  // scores: the two can be a few milliseconds apart, so wait for both.
  ASSERT_TRUE(Eventually([&] { return *ledger_->CountConversations() == 1; }));
  EXPECT_TRUE(Eventually([&] { return absl::IsNotFound(ledger_->Get(idle).status()); }));
  ASSERT_TRUE(ledger_->Commit(key_, "turn", Turn(1, {2}, "later", 1)).ok());
  EXPECT_EQ(ledger_->Get(key_)->round, 2u);
}

TEST_P(LedgerTest, PerSaltCapRefusesNewConversationsOnlyAndDeletingFreesASlot) {
  LedgerOptions o = Options();
  o.max_conversations_per_salt = 3;
  Reopen(o);
  const auto key = [](const std::string& salt, int i) {
    return LedgerKey{salt, "c" + std::to_string(i)};
  };
  ASSERT_TRUE(FullTurn(key("s", 0), "a").ok());
  ASSERT_TRUE(FullTurn(key("s", 1), "a").ok());
  // A first turn in flight holds a slot too.
  ASSERT_TRUE(ledger_->AcquireLease(key("s", 2), "first", absl::Seconds(30)).ok());
  auto refused = ledger_->AcquireLease(key("s", 3), "b", absl::Seconds(30));
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_NE(refused.status().message().find("max_conversations_per_salt"), std::string::npos);
  EXPECT_EQ(ledger_->Get(key("s", 3)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ledger_->counters().conversations_refused, 1u);
  // Existing conversations go on; other salts are unaffected.
  ASSERT_TRUE(FullTurn(key("s", 0), "a").ok());
  ASSERT_TRUE(FullTurn(key("other", 0), "a").ok());
  // A first turn that gives up frees its slot, and so does a delete.
  ASSERT_TRUE(ledger_->ReleaseLease(key("s", 2), "first").ok());
  ASSERT_TRUE(FullTurn(key("s", 3), "b").ok());
  EXPECT_EQ(ledger_->AcquireLease(key("s", 4), "b", absl::Seconds(30)).status().code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(ledger_->Delete(key("s", 1)).ok());
  ASSERT_TRUE(FullTurn(key("s", 4), "b").ok());
  EXPECT_EQ(ledger_->counters().conversations_refused, 2u);
  EXPECT_EQ(*ledger_->CountConversations(), 4u);
}

TEST_P(LedgerTest, ExpiredConversationsFreeTheirSaltSlots) {
  LedgerOptions o = TtlOptions();
  o.max_conversations_per_salt = 1;
  Reopen(o);
  ASSERT_TRUE(FullTurn(key_, "a").ok());
  const LedgerKey next{"salt", "next"};
  EXPECT_EQ(ledger_->AcquireLease(next, "b", absl::Seconds(30)).status().code(),
            absl::StatusCode::kResourceExhausted);
  PassTheTtl();
  // The slot is free once the expiry is applied: at once for Redis (its
  // counts are by expiry time), after the sweep erased it for memory and file.
  ASSERT_TRUE(Eventually([&] { return *ledger_->CountConversations() == 0; }));
  EXPECT_TRUE(FullTurn(next, "b").ok());
}

TEST_P(LedgerTest, TenantsAreSeparateNamespacesUnderTheSameSaltAndId) {
  const LedgerKey a{"salt", "c", "tenant-a"};
  const LedgerKey b{"salt", "c", "tenant-b"};
  ASSERT_TRUE(FullTurn(a, "x").ok());
  ASSERT_TRUE(FullTurn(a, "x").ok());
  EXPECT_EQ(ledger_->Get(b).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ledger_->Get(LedgerKey{"salt", "c"}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ledger_->Delete(b).code(), absl::StatusCode::kNotFound);
  // B's lease is B's: it does not block A's, and B starts at round 0.
  auto rec = ledger_->AcquireLease(b, "y", absl::Seconds(30));
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->round, 0u);
  EXPECT_TRUE(ledger_->AcquireLease(a, "z", absl::Seconds(30)).ok());
  ASSERT_TRUE(ledger_->ReleaseLease(a, "z").ok());
  ASSERT_TRUE(ledger_->Commit(b, "y", Turn(0, {7}, "b's", 0)).ok());
  ASSERT_TRUE(ledger_->Delete(b).ok());
  EXPECT_EQ(ledger_->Get(a)->round, 2u);
  // Durable with its tenant (file: replayed from the log).
  Reopen(Options());
  if (GetParam() != "memory") {
    EXPECT_EQ(ledger_->Get(a)->round, 2u);
    EXPECT_EQ(ledger_->Get(b).status().code(), absl::StatusCode::kNotFound);
  }
}

TEST_P(LedgerTest, TenantCapRefusesThatTenantsNewConversationsWithARetryDelay) {
  LedgerOptions o = Options();
  o.tenant_conversation_limit = [](std::string_view tenant) -> uint64_t {
    return tenant == "capped" ? 2 : 0;
  };
  Reopen(o);
  const auto key = [](const std::string& salt, int i, const std::string& tenant = "capped") {
    return LedgerKey{salt, "c" + std::to_string(i), tenant};
  };
  ASSERT_TRUE(FullTurn(key("s", 0), "a").ok());
  // Over all of the tenant's salts; a first turn in flight holds a slot.
  ASSERT_TRUE(ledger_->AcquireLease(key("t", 1), "first", absl::Seconds(30)).ok());
  auto refused = ledger_->AcquireLease(key("s", 2), "b", absl::Seconds(30));
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_NE(refused.status().message().find("already has 2 conversations"), std::string::npos)
      << refused.status();
  EXPECT_EQ(RetryDelayOf(refused.status()), kTenantCapRetryDelay);
  EXPECT_EQ(ledger_->counters().conversations_refused, 0u) << "counted by the service, per tenant";
  // Existing conversations go on; other tenants and the empty one are not capped.
  ASSERT_TRUE(FullTurn(key("s", 0), "a").ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(FullTurn(key("s", i, "free"), "a").ok());
    ASSERT_TRUE(FullTurn(key("s", i, ""), "a").ok());
  }
  // A first turn that gives up frees its slot, and so does a delete.
  ASSERT_TRUE(ledger_->ReleaseLease(key("t", 1), "first").ok());
  ASSERT_TRUE(FullTurn(key("s", 2), "b").ok());
  EXPECT_EQ(ledger_->AcquireLease(key("s", 3), "b", absl::Seconds(30)).status().code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(ledger_->Delete(key("s", 0)).ok());
  EXPECT_TRUE(FullTurn(key("s", 3), "b").ok());
}

TEST_P(LedgerTest, ExpiredConversationsFreeTheirTenantSlots) {
  LedgerOptions o = TtlOptions();
  o.tenant_conversation_limit = [](std::string_view) -> uint64_t { return 1; };
  Reopen(o);
  ASSERT_TRUE(FullTurn(LedgerKey{"s", "one", "t"}, "a").ok());
  const LedgerKey next{"s2", "next", "t"};
  EXPECT_EQ(ledger_->AcquireLease(next, "b", absl::Seconds(30)).status().code(),
            absl::StatusCode::kResourceExhausted);
  PassTheTtl();
  ASSERT_TRUE(Eventually([&] { return *ledger_->CountConversations() == 0; }));
  EXPECT_TRUE(FullTurn(next, "b").ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, LedgerTest, ::testing::Values("memory", "file", "redis"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace hc::router
