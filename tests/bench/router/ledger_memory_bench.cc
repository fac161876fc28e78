// Memory of the in-memory ledger per conversation at 100K conversations of
// ~2K tokens (4 rounds of 512 tokens: user message + reply, with text),
// measured as heap growth (mallinfo2) and reported beyond the raw token ids.
#include <malloc.h>

#include <cctype>
#include <cstdio>
#include <string>

#include "absl/time/clock.h"
#include "router/ledger/memory_ledger.h"

int main(int argc, char** argv) {
  using namespace hc::router;
  const int conversations = (argc > 1 && std::isdigit(static_cast<unsigned char>(argv[1][0])))
                                ? std::atoi(argv[1])
                                : 100000;
  constexpr int kRounds = 4;
  constexpr int kTokensPerRound = 512;                 // 400 prompt + 112 reply
  constexpr int kTextBytes = 4 * kTokensPerRound / 2;  // ~4 bytes/token of text per message pair
  const size_t before = mallinfo2().uordblks;
  auto ledger = NewMemoryLedger();
  std::vector<uint32_t> tokens(kTokensPerRound);
  const std::string text(kTextBytes / 2, 'x');
  const absl::Time start = absl::Now();
  for (int r = 0; r < kRounds; ++r) {
    for (int c = 0; c < conversations; ++c) {
      const LedgerKey key{"tenant-salt", "conversation-" + std::to_string(c)};
      auto rec =
          ledger->AcquireLease(key, "bench-router:1234/" + std::to_string(c), absl::Minutes(10));
      if (!rec.ok()) return 1;
      CommitRequest commit;
      commit.expected_round = rec->round;
      for (int i = 0; i < kTokensPerRound; ++i) tokens[i] = static_cast<uint32_t>(c + r + i);
      commit.appended_tokens = tokens;
      const uint32_t b = static_cast<uint32_t>(rec->tokens.size());
      commit.appended_messages = {
          LedgerMessage{Role::kUser, b, b + 400, text},
          LedgerMessage{Role::kAssistant, b + 400, b + kTokensPerRound, text}};
      commit.worker = WorkerState{"10.0.12.34:50052", rec->round + 1, b + kTokensPerRound - 1, 99};
      if (!ledger->Commit(key, "bench-router:1234/" + std::to_string(c), commit).ok()) return 1;
    }
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const size_t after = mallinfo2().uordblks;
  const double total = static_cast<double>(after - before);
  const double per = total / conversations;
  const double raw_tokens = 4.0 * kRounds * kTokensPerRound;
  const double raw_text = 2.0 * kRounds * text.size();
  std::printf("ledger memory: %d conversations x %d tokens, heap %.1f MiB, %.0f B/conversation\n",
              conversations, kRounds * kTokensPerRound, total / (1 << 20), per);
  std::printf(
      "SUMMARY ledger bytes/conversation beyond raw tokens (%.0f B): %.0f; beyond tokens+message "
      "text (%.0f B): %.0f "
      "(%.2fx raw tokens); %.0f commits/s\n",
      raw_tokens, per - raw_tokens, raw_text, per - raw_tokens - raw_text, per / raw_tokens,
      conversations * kRounds / seconds);
  return 0;
}
