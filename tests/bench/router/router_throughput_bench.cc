// Router throughput by ledger backend: 64 concurrent clients, each sending
// turn after turn (16 per conversation, then a new one) through an in-process
// router to one in-process fake worker, for a few seconds per backend. Prints turns/s per
// backend and, measured in the same run:
//   - Redis behind a proxy that adds 2 ms per round trip vs Redis direct
//     (goal >= 80%: ledger I/O is asynchronous and pipelined, so latency to
//     the ledger must not serialise turns);
//   - the file ledger with --ledger_fsync=always, group commit vs one
//     fdatasync per turn.
// Usage: router_throughput_bench [seconds per backend, default 3]
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "router/ledger/file_ledger.h"
#include "router/ledger/memory_ledger.h"
#include "router/ledger/redis_ledger.h"
#include "tests/bench/router/delay_proxy.h"
#include "tests/unit/router/ledger/redis_server_fixture.h"
#include "tests/unit/router/service/router_harness.h"

namespace hc::router {
namespace {

constexpr int kConversations = 64;

// Turns per second through a router on `ledger`.
double Measure(std::unique_ptr<ConversationLedger> ledger, absl::Duration duration) {
  testing::HarnessOptions o;
  o.ledger = std::move(ledger);
  o.worker.reply_letters = 4;
  o.worker.emoji = false;
  testing::RouterHarness h(1, std::move(o));
  std::atomic<int64_t> turns{0}, failures{0};
  std::atomic<bool> reported{false};
  const absl::Time stop_at = absl::Now() + duration;
  std::vector<std::thread> clients;
  for (int c = 0; c < kConversations; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; absl::Now() < stop_at; ++i) {
        // A new conversation every 16 turns keeps the context far from the
        // fake model's limit however fast the machine is.
        const std::string id = absl::StrCat("conv-", c, "-", i / 16);
        auto r = h.Complete(testing::RouterHarness::UserTurn(id, absl::StrCat("turn ", i)));
        (r.status.ok() ? turns : failures).fetch_add(1);
        if (!r.status.ok() && !reported.exchange(true)) {
          std::printf("  first failure: %d %s\n", r.status.error_code(),
                      r.status.error_message().c_str());
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  if (failures.load() > 0)
    std::printf("  (%lld turns failed)\n", static_cast<long long>(failures.load()));
  return static_cast<double>(turns.load()) / absl::ToDoubleSeconds(duration);
}

std::unique_ptr<ConversationLedger> Redis(int port, const std::string& prefix) {
  LedgerOptions o;
  o.backend = absl::StrCat("redis://127.0.0.1:", port);
  o.redis_prefix = prefix;
  auto l = OpenRedisLedger(o);
  HC_CHECK(l.ok()) << l.status();
  return *std::move(l);
}

std::unique_ptr<ConversationLedger> File(const std::string& dir, bool group_commit) {
  std::filesystem::remove_all(dir);
  LedgerOptions o;
  o.backend = "file";
  o.dir = dir;
  o.fsync = FsyncPolicy::kAlways;
  FileLedgerOptions fo;
  fo.group_commit = group_commit;
  auto l = OpenFileLedger(o, fo);
  HC_CHECK(l.ok()) << l.status();
  return *std::move(l);
}

}  // namespace
}  // namespace hc::router

int main(int argc, char** argv) {
  using namespace hc::router;
  const int seconds =
      (argc > 1 && std::isdigit(static_cast<unsigned char>(argv[1][0]))) ? std::atoi(argv[1]) : 3;
  const absl::Duration d = absl::Seconds(seconds);
  hc::SetMinLogSeverity(hc::LogSeverity::kWarning);
  auto redis_owner = std::make_unique<testing::RedisServer>();
  testing::RedisServer& redis = *redis_owner;
  if (!redis.ok()) {
    std::printf("redis-server did not start\n");
    return 1;
  }
  bench::DelayProxy proxy(redis.port(), absl::Milliseconds(2));
  char tmpl[] = "/tmp/hc-throughput-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);

  const double memory = Measure(NewMemoryLedger(), d);
  std::printf("memory ledger:                     %8.0f turns/s\n", memory);
  const double redis_direct = Measure(Redis(redis.port(), "direct"), d);
  std::printf("redis ledger:                      %8.0f turns/s\n", redis_direct);
  const double redis_delayed = Measure(Redis(proxy.port(), "delayed"), d);
  std::printf("redis ledger, +2 ms per round trip: %8.0f turns/s\n", redis_delayed);
  const double file_group = Measure(File(dir + "/group", true), d);
  std::printf("file ledger, fsync always, group:  %8.0f turns/s\n", file_group);
  const double file_single = Measure(File(dir + "/single", false), d);
  std::printf("file ledger, fsync always, 1/turn: %8.0f turns/s\n", file_single);
  std::filesystem::remove_all(dir);

  std::printf(
      "SUMMARY router throughput, %d concurrent conversations, 1 fake worker: redis +2 ms "
      "= %.1f%% of redis direct (goal >= 80%%); file fsync=always group commit = %.2fx one "
      "fdatasync per turn; memory %.0f turns/s\n",
      kConversations, 100.0 * redis_delayed / std::max(redis_direct, 1e-9),
      file_group / std::max(file_single, 1e-9), memory);
  std::fflush(stdout);
  redis_owner.reset();  // _exit skips destructors: stop redis-server first
  ::_exit(0);           // the proxy's detached threads end with the process
}
