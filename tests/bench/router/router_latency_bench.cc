// Latency the router adds to a streamed turn: the same turn (a new
// conversation, "hello" rendered by ByteTextCodec, an 8-token streamed reply)
// sent to an in-process fake worker directly over loopback, and through an
// in-process router (memory ledger) to the same worker. Interleaved so both
// see the same machine state; prints p50/p99 of each and of the difference.
// Goal: p50 <= 0.3 ms added.
#include <cstdio>

#include "tests/bench/router/latency_turns.h"

int main(int argc, char** argv) {
  using namespace hc::router;
  using bench::Percentile;
  const int turns = bench::SetUpLatencyBench(argc, argv);
  testing::RouterHarness h(1);
  bench::LatencyTurns run(h);

  std::vector<double> direct, routed;
  for (int i = 0; i < turns + 200; ++i) {
    const std::string id = "bench-" + std::to_string(i);
    const std::optional<double> d = run.Direct(id + "-d");
    const std::optional<double> r = run.Routed(id + "-r");
    if (!d.has_value() || !r.has_value()) return 1;
    if (i >= 200) {  // warm-up done
      direct.push_back(*d);
      routed.push_back(*r);
    }
  }
  std::vector<double> added(direct.size());
  for (size_t i = 0; i < direct.size(); ++i) added[i] = routed[i] - direct[i];
  std::printf("direct to worker: p50 %.3f ms p99 %.3f ms\n", Percentile(direct, 0.5),
              Percentile(direct, 0.99));
  std::printf("through router:   p50 %.3f ms p99 %.3f ms\n", Percentile(routed, 0.5),
              Percentile(routed, 0.99));
  std::printf(
      "SUMMARY router added latency per streamed turn (%d turns, 8 tokens each): p50 %.3f ms, p99 "
      "%.3f ms "
      "(p50(routed)-p50(direct) = %.3f ms; goal p50 <= 0.3 ms)\n",
      turns, Percentile(added, 0.5), Percentile(added, 0.99),
      Percentile(routed, 0.5) - Percentile(direct, 0.5));
  return 0;
}
