// Cost of one routing decision (WorkerPool::Route) with 2, 10, 100 and 1000
// workers, for a new conversation (power of two choices) and a sticky one.
// Goal: <= 5 us, flat in the number of workers. Prints the 1000/2 ratio.
#include <cstdio>
#include <map>

#include "benchmark/benchmark.h"
#include "common/logging.h"
#include "router/routing/worker_pool.h"

namespace hc::router {
namespace {

class StaticProber : public WorkerProber {
 public:
  std::vector<absl::StatusOr<WorkerLoad>> ProbeAll(
      const std::vector<std::shared_ptr<Worker>>& workers) override {
    std::vector<absl::StatusOr<WorkerLoad>> out;
    for (size_t i = 0; i < workers.size(); ++i) {
      WorkerLoad l;
      l.num_waiting = static_cast<uint32_t>(i % 7);
      l.free_kv_blocks = static_cast<uint32_t>(100 + i % 13);
      l.total_kv_blocks = 200;
      out.push_back(l);
    }
    return out;
  }
};

std::unique_ptr<WorkerPool> MakePool(int n) {
  WorkerPoolOptions o;
  for (int i = 0; i < n; ++i)
    o.static_workers.push_back("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256) +
                               ":50052");
  auto pool = std::make_unique<WorkerPool>(o, std::make_unique<StaticProber>(), nullptr);
  pool->Refresh();
  return pool;
}

void BM_RouteNewConversation(benchmark::State& state) {
  auto pool = MakePool(static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(pool->Route(""));
}
BENCHMARK(BM_RouteNewConversation)->Arg(2)->Arg(10)->Arg(100)->Arg(1000);

void BM_RouteSticky(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  auto pool = MakePool(n);
  const std::string id =
      "10.0." + std::to_string((n - 1) / 256) + "." + std::to_string((n - 1) % 256) + ":50052";
  for (auto _ : state) benchmark::DoNotOptimize(pool->Route(id));
}
BENCHMARK(BM_RouteSticky)->Arg(2)->Arg(10)->Arg(100)->Arg(1000);

// Collects ns per iteration per benchmark name for the summary.
class Capture : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) ns[r.benchmark_name()] = r.GetAdjustedRealTime();
    ConsoleReporter::ReportRuns(runs);
  }
  std::map<std::string, double> ns;
};

}  // namespace
}  // namespace hc::router

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  hc::SetMinLogSeverity(hc::LogSeverity::kWarning);
  hc::router::Capture capture;
  benchmark::RunSpecifiedBenchmarks(&capture);
  for (const char* b : {"BM_RouteNewConversation", "BM_RouteSticky"}) {
    const double t2 = capture.ns[std::string(b) + "/2"],
                 t1000 = capture.ns[std::string(b) + "/1000"];
    if (t2 > 0 && t1000 > 0) {
      std::printf(
          "SUMMARY %s: %.0f ns at 2 workers, %.0f ns at 1000 workers, ratio 1000/2 = %.2f (goal <= "
          "5000 ns, flat)\n",
          b, t2, t1000, t1000 / t2);
    }
  }
  return 0;
}
