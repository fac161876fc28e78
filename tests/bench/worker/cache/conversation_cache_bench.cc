// Attach + publish of one conversation with 32K tokens of history, with 1K and
// with 100K other conversations stored. The cost must be O(blocks) metadata
// (ref 2K block ids, unref the old ones) plus one tail-block copy and one Mamba
// state copy, independent of how many conversations the cache holds: the
// summary line prints the 100K / 1K time ratio (goal <= 1.2), both measured in
// this run. Layouts are tiny so 100K conversations fit in memory quickly; the
// copies are therefore cheap and the figure is dominated by the bookkeeping.
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "benchmark/benchmark.h"
#include "common/logging.h"
#include "tests/unit/worker/runtime/host_cache_memory.h"
#include "worker/cache/conversation_cache.h"

namespace hc::cache {
namespace {

constexpr int kBlockSize = 16;
constexpr int64_t kHistoryTokens = 32 * 1024 + 5;  // unaligned: the attach copies a tail
constexpr int kOtherTokens = 10;                   // one block per stored conversation

struct Fixture {
  std::unique_ptr<runtime::BackendCacheMemory> memory;
  std::unique_ptr<ConversationCache> cache;
  ConversationKey target{"bench-salt", "target"};
  RoundStamp stamp;
};

// Commits a fresh conversation of num_tokens tokens at round 1.
RoundStamp CommitFresh(ConversationCache& cache, const ConversationKey& key, int64_t num_tokens) {
  const AttachResult a = cache.AttachFresh(key).value();
  HC_CHECK_OK(cache.Append(a.request, num_tokens));
  const RoundStamp s{.round = 1, .num_tokens = num_tokens, .token_hash = MixHash64(num_tokens)};
  HC_CHECK_OK(cache.Commit(a.request, s));
  return s;
}

// One fixture per conversation count, built once (outside any timing).
Fixture& GetFixture(int num_conversations) {
  static std::map<int, std::unique_ptr<Fixture>>* fixtures =
      new std::map<int, std::unique_ptr<Fixture>>();
  std::unique_ptr<Fixture>& f = (*fixtures)[num_conversations];
  if (f != nullptr) return *f;
  f = std::make_unique<Fixture>();
  const int history_blocks = static_cast<int>((kHistoryTokens + kBlockSize - 1) / kBlockSize);
  const runtime::KvLayout kv{.num_layers = 1,
                             .num_blocks = history_blocks + num_conversations + 64,
                             .block_size = kBlockSize,
                             .num_kv_heads = 1,
                             .head_dim = 4};
  const runtime::MambaLayout mamba{.num_layers = 1,
                                   .num_slots = num_conversations + 8,
                                   .conv_dim = 8,
                                   .conv_width = 4,
                                   .num_heads = 1,
                                   .head_dim = 4,
                                   .state_size = 8};
  f->memory = runtime::testing::MakeHostCacheMemory(kv, mamba, 1).value();
  ConversationCache::Options options;
  options.memory = f->memory.get();
  f->cache = ConversationCache::Create(std::move(options)).value();
  f->stamp = CommitFresh(*f->cache, f->target, kHistoryTokens);
  for (int i = 1; i < num_conversations; ++i) {
    CommitFresh(*f->cache, {"bench-salt", absl::StrCat("conversation-", i)}, kOtherTokens);
  }
  HC_CHECK(f->cache->Counters().conversations == num_conversations) << "fixture lost conversations";
  return *f;
}

void BM_AttachPublish32K(benchmark::State& state) {
  const int num_conversations = static_cast<int>(state.range(0));
  Fixture& f = GetFixture(num_conversations);
  ConversationCache& cache = *f.cache;
  const int64_t copies_before = cache.Counters().kv_cow_copies;
  for (auto _ : state) {
    // lookup -> attach -> publish a new round of the same length (no tokens
    // appended, so every iteration sees the same 32K-token state).
    if (cache.Lookup(f.target, f.stamp) != LookupResult::kHit) {
      state.SkipWithError("lookup missed");
      break;
    }
    const absl::StatusOr<AttachResult> a = cache.Attach(f.target, f.stamp);
    if (!a.ok()) {
      state.SkipWithError(a.status().ToString().c_str());
      break;
    }
    ++f.stamp.round;
    const absl::Status s = cache.Commit(a->request, f.stamp);
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      break;
    }
  }
  const CacheCounters c = cache.Counters();
  state.counters["conversations"] = static_cast<double>(c.conversations);
  state.counters["blocks"] = static_cast<double>(cache.Inspect(f.target)->blocks.size());
  state.counters["tail_copies_per_iter"] = static_cast<double>(c.kv_cow_copies - copies_before) /
                                           static_cast<double>(state.iterations());
}
BENCHMARK(BM_AttachPublish32K)
    ->Arg(1000)
    ->Arg(100000)
    ->Repetitions(5)
    ->Unit(benchmark::kMicrosecond);

// Console output plus the per-repetition times, for the ratio summary.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.run_type != Run::RT_Iteration || r.error_occurred) continue;
      const auto it = r.counters.find("conversations");
      if (it == r.counters.end()) continue;
      times_[static_cast<int>(it->second.value)].push_back(r.GetAdjustedRealTime());
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void PrintSummary() {
    if (!times_.contains(1000) || !times_.contains(100000)) {
      GetOutputStream() << "summary: missing runs, no ratio\n";
      return;
    }
    const auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    const auto min = [](const std::vector<double>& v) {
      return *std::min_element(v.begin(), v.end());
    };
    const double med_1k = median(times_[1000]);
    const double med_100k = median(times_[100000]);
    const double ratio = med_100k / med_1k;
    GetOutputStream() << absl::StrFormat(
        "summary: attach+publish of a 32K-token conversation: median %.2f us at 1K stored, "
        "%.2f us at 100K stored; ratio 100K/1K = %.3f (min-based %.3f), goal <= 1.2: %s\n",
        med_1k, med_100k, ratio, min(times_[100000]) / min(times_[1000]),
        ratio <= 1.2 ? "met" : "NOT met");
  }

 private:
  std::map<int, std::vector<double>> times_;
};

}  // namespace
}  // namespace hc::cache

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  hc::cache::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintSummary();
  benchmark::Shutdown();
  return 0;
}
