// Helpers shared by the file ledger tests: turns whose tokens are checkable
// on replay, and a temporary directory.
#ifndef HC_TESTS_UNIT_ROUTER_LEDGER_LEDGER_TEST_UTIL_H_
#define HC_TESTS_UNIT_ROUTER_LEDGER_LEDGER_TEST_UTIL_H_

#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "router/ledger/ledger.h"

namespace hc::router::testing {

// Tokens the test writes for round r of conversation c: checkable on replay.
inline std::vector<uint32_t> RoundTokens(int c, uint64_t r, int n) {
  std::vector<uint32_t> t(n);
  for (int j = 0; j < n; ++j) t[j] = static_cast<uint32_t>(c * 1'000'000 + r * 1000 + j);
  return t;
}

inline LedgerKey Key(int c) { return LedgerKey{"s", "c" + std::to_string(c)}; }

// The usage round `round` (0-based) of conversation c commits: two rounds of
// three carry one, so replay reads both record families (with and without).
inline std::optional<RoundUsage> RoundUsageOf(int c, uint64_t round) {
  if (round % 3 == 2) return std::nullopt;
  return RoundUsage{static_cast<uint32_t>(1000 * c + round), static_cast<uint32_t>(round),
                    static_cast<uint32_t>(c + 1)};
}

// The commit of round `round` of conversation c whose ledger holds `begin`
// tokens.
inline CommitRequest RoundCommit(int c, uint64_t round, uint32_t begin, int tokens_per_round) {
  CommitRequest commit;
  commit.usage = RoundUsageOf(c, round);
  commit.expected_round = round;
  commit.appended_tokens = RoundTokens(c, round, tokens_per_round);
  commit.appended_messages = {LedgerMessage{Role::kUser, begin, begin + tokens_per_round,
                                            "round " + std::to_string(round)}};
  commit.worker = WorkerState{"w", round + 1, begin + tokens_per_round, 7};
  return commit;
}

// A token of round r as a rewrite turn re-rendered it: checkable on replay.
inline uint32_t Rewritten(uint32_t token) { return token | 0x80000000u; }

// Runs one full turn on conversation c (blocking forms). Odd rounds are
// rewrite turns (CommitRequest::rewrite_from): they replace the previous
// round's message and tokens with its rewritten tokens, then add their own,
// so every file ledger test replays both record kinds.
inline absl::Status CommitRound(ConversationLedger& ledger, int c, int tokens_per_round,
                                const std::string& holder = "writer") {
  auto rec = ledger.AcquireLease(Key(c), holder, absl::Seconds(30));
  if (!rec.ok()) return rec.status();
  const uint32_t end = static_cast<uint32_t>(rec->tokens.size());
  CommitRequest commit = RoundCommit(c, rec->round, end, tokens_per_round);
  if (rec->round % 2 == 1 && !rec->messages.empty()) {
    LedgerMessage previous = rec->messages.back();
    std::vector<uint32_t> tokens;
    for (uint32_t i = previous.begin; i < end; ++i) tokens.push_back(Rewritten(rec->tokens[i]));
    tokens.insert(tokens.end(), commit.appended_tokens.begin(), commit.appended_tokens.end());
    commit.rewrite_from = previous.begin;
    commit.appended_tokens = std::move(tokens);
    commit.appended_messages.insert(commit.appended_messages.begin(), std::move(previous));
  }
  return ledger.Commit(Key(c), holder, commit);
}

// Every round 0..round-1 present, in order, nothing else (an even round
// rewritten by the odd one after it); at least min_round.
inline void ExpectConsistent(ConversationLedger& ledger, int c, int tokens_per_round,
                             uint64_t min_round) {
  auto rec = ledger.Get(Key(c));
  if (min_round == 0 && !rec.ok()) return;
  ASSERT_TRUE(rec.ok()) << "conversation " << c << ": " << rec.status();
  EXPECT_GE(rec->round, min_round) << "conversation " << c;
  std::vector<uint32_t> expected;
  for (uint64_t r = 0; r < rec->round; ++r) {
    auto t = RoundTokens(c, r, tokens_per_round);
    if (r % 2 == 0 && r + 1 < rec->round) {
      for (uint32_t& x : t) x = Rewritten(x);
    }
    expected.insert(expected.end(), t.begin(), t.end());
  }
  EXPECT_EQ(rec->tokens, expected) << "conversation " << c;
  ASSERT_EQ(rec->messages.size(), rec->round);
  for (uint64_t r = 0; r < rec->round; ++r) {
    EXPECT_EQ(rec->messages[r].text, "round " + std::to_string(r));
    EXPECT_EQ(rec->messages[r].begin, r * tokens_per_round);
    EXPECT_EQ(UsageOfRound(*rec, r + 1), RoundUsageOf(c, r))
        << "conversation " << c << " round " << r;
  }
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/hc-file-ledger-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace hc::router::testing

#endif  // HC_TESTS_UNIT_ROUTER_LEDGER_LEDGER_TEST_UTIL_H_
