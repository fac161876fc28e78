// Stop strings in the engine: where a turn stops, what it reports (the cut:
// reply bytes and whole tokens before the stop string), what state it
// commits, and that the next turn is exact against a from-scratch recompute
// of the router's ledger (which ends where the stop string begins).
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/text/stop_limits.h"
#include "gtest/gtest.h"
#include "tests/unit/worker/engine/engine_harness.h"
#include "worker/engine/engine.h"

namespace hc::engine {
namespace {

using cache::RoundStamp;
using testing::Conversation;
using testing::FreshTurn;
using testing::Harness;
using testing::RandomTokens;
using testing::Text;
using testing::TokenText;

struct StopCase {
  std::string stop;
  int64_t token = 0;  // the generated token it begins in
  int64_t begin = 0;  // its first byte's offset in the reply
  int64_t last = 0;   // the generated token it ends in
};

// A stop string that begins `skip` bytes into generated token k (k >= 1) and
// spans `span` tokens, occurring nowhere earlier in `tokens`' text.
std::optional<StopCase> FindStop(const std::vector<int32_t>& tokens, size_t skip, int span) {
  const std::string all = Text(tokens);
  size_t start = Text(std::span(tokens).first(1)).size();
  for (size_t k = 1; k + span <= tokens.size(); ++k) {
    const std::string_view first = TokenText(tokens[k]);
    StopCase c{.stop = std::string(first.size() > skip ? first.substr(skip) : ""),
               .token = static_cast<int64_t>(k),
               .begin = static_cast<int64_t>(start + skip),
               .last = static_cast<int64_t>(k) + span - 1};
    bool ok = first.size() > skip;
    for (int i = 1; i < span; ++i) {
      ok = ok && !TokenText(tokens[k + i]).empty();
      c.stop += TokenText(tokens[k + i]);
    }
    if (ok && all.find(c.stop) == static_cast<size_t>(c.begin)) return c;
    start += first.size();
  }
  return std::nullopt;
}

// Runs a conversation on a caching engine and on a from-scratch one: an
// optional first turn, then a turn cut by a stop string found with (skip,
// span), then a plain turn whose output must be equal on both.
void StopTurnThenExactNextTurn(size_t skip, int span, bool stop_in_first_turn) {
  Harness cached, scratch, probe_harness;
  Conversation a(&cached, "c"), b(&scratch, "c"), probe(&probe_harness, "c");
  std::mt19937 rng(11);
  if (!stop_in_first_turn) {
    const auto warm = RandomTokens(rng, 6);
    ASSERT_TRUE(a.Turn(warm, 4)->result.has_value());
    ASSERT_TRUE(b.Turn(warm, 4, /*use_cache=*/false)->result.has_value());
    ASSERT_TRUE(probe.Turn(warm, 4)->result.has_value());
  }
  const RoundStamp base = a.stamp().value_or(RoundStamp{});
  const size_t ledger_before = a.ledger().size();

  // The same context gives the same tokens: find a stop string in them.
  const auto suffix = RandomTokens(rng, 5);
  const auto probed = probe.Turn(suffix, 16);
  ASSERT_EQ(probed->tokens.size(), 16u);
  const std::optional<StopCase> c = FindStop(probed->tokens, skip, span);
  ASSERT_TRUE(c.has_value()) << "no usable stop string in " << Text(probed->tokens);

  const auto ra = a.Turn(suffix, 16, /*use_cache=*/true, {c->stop});
  const auto rb = b.Turn(suffix, 16, /*use_cache=*/false, {c->stop});
  ASSERT_TRUE(ra->result.has_value()) << ra->failed;
  ASSERT_TRUE(rb->result.has_value()) << rb->failed;
  EXPECT_EQ(ra->result->finish_reason, "stop");
  // Generation ends with the token the stop string ends in.
  const std::vector<int32_t> expected(probed->tokens.begin(), probed->tokens.begin() + c->last + 1);
  EXPECT_EQ(ra->tokens, expected);
  EXPECT_EQ(rb->tokens, expected);
  ASSERT_TRUE(ra->result->stop_string.has_value());
  EXPECT_EQ(ra->result->stop_string->reply_bytes, c->begin);
  EXPECT_EQ(ra->result->stop_string->tokens_before, c->token);
  EXPECT_EQ(ra->result->completion_tokens, c->last + 1);

  // The ledger (the router's) ends where the stop string begins.
  const auto reply = std::span(a.ledger()).subspan(ledger_before + suffix.size());
  EXPECT_EQ(Text(reply), Text(probed->tokens).substr(0, c->begin));

  // The committed state is a prefix of the ledger.
  const RoundStamp committed = ra->result->committed;
  EXPECT_EQ(committed.round, base.round + 1);
  if (c->last == c->token) {
    // Begins in the last sampled token: everything before it is committed.
    EXPECT_EQ(committed.num_tokens, static_cast<int64_t>(ledger_before + suffix.size()) + c->token);
  } else {
    // Begins earlier: the Mamba state is past the cut, so the base is kept.
    EXPECT_EQ(committed.num_tokens, base.num_tokens);
    EXPECT_EQ(committed.token_hash, base.token_hash);
  }
  ASSERT_LE(committed.num_tokens, static_cast<int64_t>(a.ledger().size()));
  EXPECT_EQ(committed.token_hash,
            TokenHash<int32_t>(std::span(a.ledger()).first(committed.num_tokens)));

  // The next turn computes what the state lacks and equals a recompute.
  const auto next = RandomTokens(rng, 4);
  const auto na = a.Turn(next, 6);
  const auto nb = b.Turn(next, 6, /*use_cache=*/false);
  ASSERT_TRUE(na->result.has_value()) << na->failed;
  ASSERT_TRUE(nb->result.has_value()) << nb->failed;
  EXPECT_EQ(na->tokens, nb->tokens);
  EXPECT_EQ(na->start.prompt_tokens, nb->start.prompt_tokens);
  EXPECT_EQ(na->start.cached_tokens, committed.num_tokens);
  EXPECT_EQ(a.resends(), 0);
}

TEST(EngineStopTest, StopStringInTheLastTokenCommitsAllButItAndTheNextTurnIsExact) {
  StopTurnThenExactNextTurn(/*skip=*/0, /*span=*/1, /*stop_in_first_turn=*/false);
}

TEST(EngineStopTest, StopStringStartingMidTokenCutsInsideTheTokenAndTheNextTurnIsExact) {
  StopTurnThenExactNextTurn(/*skip=*/1, /*span=*/1, /*stop_in_first_turn=*/false);
}

TEST(EngineStopTest, StopStringAcrossTokensKeepsTheBaseStateAtTheNewRoundAndTheNextTurnIsExact) {
  StopTurnThenExactNextTurn(/*skip=*/0, /*span=*/2, /*stop_in_first_turn=*/false);
}

TEST(EngineStopTest, StopStringStartingMidTokenAcrossTokensKeepsTheBaseAndTheNextTurnIsExact) {
  StopTurnThenExactNextTurn(/*skip=*/1, /*span=*/3, /*stop_in_first_turn=*/false);
}

TEST(EngineStopTest, StopStringAcrossTokensOfAFirstTurnLeavesNoStateAndTheNextTurnIsExact) {
  StopTurnThenExactNextTurn(/*skip=*/0, /*span=*/2, /*stop_in_first_turn=*/true);
}

TEST(EngineStopTest, EachGeneratedTokenIsFedToTheMatcherOnce) {
  // The matcher is incremental: no step re-reads earlier tokens, however
  // many and long the stop strings.
  Harness h;
  TurnSpec t = FreshTurn("c", /*max_tokens=*/40);
  for (int i = 0; i < kMaxStopStrings; ++i) {
    t.sampling.stop_strings.push_back(std::string(kMaxStopStringBytes - 1, 'a' + i) + "#");
  }
  const auto rec = h.Run(t);
  ASSERT_TRUE(rec->result.has_value()) << rec->failed;
  EXPECT_EQ(rec->result->finish_reason, "length");
  EXPECT_EQ(rec->tokens.size(), 40u);
  EXPECT_EQ(h.token_bytes_calls(), 40);
  EXPECT_FALSE(rec->result->stop_string.has_value());
}

TEST(EngineStopTest, StopConditionsBeyondTheLimitsAreRejectedAndChangeNothing) {
  Harness h;
  struct Case {
    const char* what;
    std::function<void(TurnSampling&)> mutate;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"17 stop strings", [](TurnSampling& s) { s.stop_strings.assign(kMaxStopStrings + 1, "x"); },
       "17 stop strings; at most 16"},
      {"a 257-byte stop string",
       [](TurnSampling& s) {
         s.stop_strings = {"ok", std::string(kMaxStopStringBytes + 1, 'x')};
       },
       "stop string 1 has 257 bytes; at most 256"},
      {"an empty stop string", [](TurnSampling& s) { s.stop_strings = {""}; },
       "stop string 0 is empty"},
      {"65 stop token ids",
       [](TurnSampling& s) { s.stop_token_ids.assign(kMaxStopTokenIds + 1, 5); },
       "65 stop token ids; at most 64"},
  };
  for (const Case& c : cases) {
    TurnSpec t = FreshTurn(c.what);
    c.mutate(t.sampling);
    const absl::Status s = h.engine().Submit(t, std::make_shared<testing::Recorder>());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_NE(s.message().find(c.message), std::string::npos) << c.what << ": " << s.message();
  }
  // At the limits exactly: accepted.
  TurnSpec ok = FreshTurn("at the limits");
  ok.sampling.stop_strings.assign(kMaxStopStrings, std::string(kMaxStopStringBytes, 'x'));
  ok.sampling.stop_token_ids.assign(kMaxStopTokenIds, 5);
  EXPECT_TRUE(h.Run(ok)->result.has_value());
  ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));
  EXPECT_EQ(h.engine().Load().cache.conversations, 1);  // only the accepted turn's
}

}  // namespace
}  // namespace hc::engine
