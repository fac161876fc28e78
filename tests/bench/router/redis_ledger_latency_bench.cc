// Redis ledger throughput under network latency: 64 concurrent conversations
// (AcquireLease -> Commit chains through the asynchronous callbacks) against
// a redis-server directly and through a TCP proxy that delays every chunk
// from the ledger to Redis by 2 ms (2 ms added per round trip). Prints turns/s
// of each and their ratio, measured in one run. With pipelining, throughput
// is bounded by Redis and the loop thread, not by round trips.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "router/ledger/redis_ledger.h"
#include "tests/bench/router/delay_proxy.h"
#include "tests/bench/router/turn_driver.h"
#include "tests/unit/router/ledger/redis_server_fixture.h"

int main(int argc, char** argv) {
  using namespace hc::router;
  const absl::Duration duration = absl::Seconds(argc > 1 ? std::atoi(argv[1]) : 3);
  constexpr int kConcurrency = 64;
  auto server_owner = std::make_unique<testing::RedisServer>();
  testing::RedisServer& server = *server_owner;
  if (!server.ok()) {
    std::printf("redis-server did not start\n");
    return 1;
  }
  bench::DelayProxy proxy(server.port(), absl::Milliseconds(2));
  double rate[2] = {};
  double per_turn[2] = {};
  for (int delayed = 0; delayed < 2; ++delayed) {
    LedgerOptions o;
    o.backend = "redis://127.0.0.1:" + std::to_string(delayed ? proxy.port() : server.port());
    o.redis_prefix = delayed ? "delayed" : "direct";
    auto ledger = OpenRedisLedger(o);
    if (!ledger.ok()) {
      std::printf("open: %s\n", ledger.status().ToString().c_str());
      return 1;
    }
    bench::TurnDriver driver(**ledger, "c", 256);
    const uint64_t rt0 = (*ledger)->round_trips();
    rate[delayed] = driver.Run(kConcurrency, duration);
    per_turn[delayed] = static_cast<double>((*ledger)->round_trips() - rt0) /
                        std::max(1.0, rate[delayed] * absl::ToDoubleSeconds(duration));
  }
  std::printf(
      "SUMMARY redis ledger, %d concurrent conversations: %.0f turns/s direct, %.0f turns/s "
      "with 2 ms added per round trip (%.1f%% of direct; ~%.1f commands per turn)\n",
      kConcurrency, rate[0], rate[1], 100.0 * rate[1] / std::max(rate[0], 1e-9), per_turn[1]);
  std::fflush(stdout);
  server_owner.reset();  // _exit skips destructors: stop redis-server first
  ::_exit(0);            // the proxy's detached threads end with the process
}
