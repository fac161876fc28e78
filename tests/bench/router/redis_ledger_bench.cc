// Redis backend: round trips per turn (the ledger's own count, checked
// against Redis's INFO commandstats) and latency per turn, against a
// throwaway redis-server on loopback.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <regex>

#include "absl/time/clock.h"
#include "router/ledger/redis_ledger.h"
#include "tests/unit/router/ledger/redis_server_fixture.h"

namespace {
// Client commands Redis executed (EVALSHA; INFO excluded), and the commands
// the scripts ran inside them (not round trips).
struct Calls {
  long client = 0;
  long in_scripts = 0;
};
Calls CountCalls(const hc::router::testing::RedisServer& server) {
  const std::string info = server.Command("INFO", "commandstats");
  Calls c;
  const std::regex re("cmdstat_(\\w+):calls=(\\d+)");
  for (auto it = std::sregex_iterator(info.begin(), info.end(), re); it != std::sregex_iterator();
       ++it) {
    const std::string name = (*it)[1];
    const long n = std::stol((*it)[2]);
    if (name == "evalsha" || name == "eval")
      c.client += n;
    else if (name != "info" && name != "script" && name != "ping")
      c.in_scripts += n;
  }
  return c;
}
}  // namespace

int main(int argc, char** argv) {
  using namespace hc::router;
  const int turns = (argc > 1 && std::isdigit(static_cast<unsigned char>(argv[1][0])))
                        ? std::atoi(argv[1])
                        : 2000;
  testing::RedisServer server;
  if (!server.ok()) {
    std::printf("redis-server did not start\n");
    return 1;
  }
  LedgerOptions o;
  o.backend = server.url();
  auto ledger = OpenRedisLedger(o).value();
  std::vector<uint32_t> tokens(512, 7);
  std::vector<double> ms;
  const Calls calls0 = CountCalls(server);
  const uint64_t rt0 = ledger->round_trips();
  for (int i = 0; i < turns; ++i) {
    const LedgerKey key{"salt", "c" + std::to_string(i % 500)};  // conversations grow to ~2K tokens
    const absl::Time t0 = absl::Now();
    auto rec = ledger->AcquireLease(key, "router-1", absl::Minutes(1));
    if (!rec.ok()) return 1;
    CommitRequest c;
    c.expected_round = rec->round;
    c.appended_tokens = tokens;
    c.appended_messages = {LedgerMessage{Role::kUser, 0, 512, "hello"}};
    c.worker = WorkerState{"10.0.0.1:50052", rec->round + 1, 511, 1};
    if (!ledger->Commit(key, "router-1", c).ok()) return 1;
    ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
  }
  const double rt = static_cast<double>(ledger->round_trips() - rt0) / turns;
  const Calls calls1 = CountCalls(server);
  const double redis_calls = static_cast<double>(calls1.client - calls0.client) / turns;
  const double script_calls = static_cast<double>(calls1.in_scripts - calls0.in_scripts) / turns;
  // Failed turns: acquire + release.
  const uint64_t rt1 = ledger->round_trips();
  for (int i = 0; i < 100; ++i) {
    const LedgerKey key{"salt", "f" + std::to_string(i)};
    if (!ledger->AcquireLease(key, "router-1", absl::Minutes(1)).ok()) return 1;
    if (!ledger->ReleaseLease(key, "router-1").ok()) return 1;
  }
  std::sort(ms.begin(), ms.end());
  std::printf(
      "SUMMARY redis ledger: %.2f round trips per committed turn (Redis counted %.2f client "
      "commands/turn, "
      "%.2f commands inside the Lua scripts), "
      "%.2f per failed turn; turn ledger latency p50 %.3f ms p99 %.3f ms (%d turns, up to 2K-token "
      "conversations)\n",
      rt, redis_calls, script_calls, (ledger->round_trips() - rt1) / 100.0, ms[ms.size() / 2],
      ms[static_cast<size_t>(0.99 * (ms.size() - 1))], turns);
  return 0;
}
