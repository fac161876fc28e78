// Cost of finding the key of one call (ApiKeySet::Find: SHA-256 of the
// presented key, an index lookup by its first 8 bytes, a constant-time compare
// of the full hash) with 1, 100, 1000 and 10000 keys in the file, for a known
// and an unknown key. Goal: flat in the number of keys (a linear
// constant-time scan took 170 us with 10000 keys).
#include <string>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "router/tenancy/api_keys.h"

namespace hc::router {
namespace {

std::shared_ptr<const ApiKeySet> MakeKeys(int n) {
  std::string json = R"({"keys": [)";
  for (int i = 0; i < n; ++i) {
    absl::StrAppend(&json, i ? "," : "", R"({"sha256": ")", HashApiKey(absl::StrCat("key-", i)),
                    R"(", "tenant": "t)", i, R"(", "salt_prefix": ""})");
  }
  return ApiKeySet::Parse(json + "]}").value();
}

void BM_FindKnownKey(benchmark::State& state) {
  auto keys = MakeKeys(static_cast<int>(state.range(0)));
  const std::string key = absl::StrCat("key-", state.range(0) / 2);
  for (auto _ : state) benchmark::DoNotOptimize(keys->Find(key));
}
BENCHMARK(BM_FindKnownKey)->Arg(1)->Arg(100)->Arg(1000)->Arg(10000);

void BM_FindUnknownKey(benchmark::State& state) {
  auto keys = MakeKeys(static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(keys->Find("not-a-key"));
}
BENCHMARK(BM_FindUnknownKey)->Arg(1)->Arg(100)->Arg(1000)->Arg(10000);

}  // namespace
}  // namespace hc::router

BENCHMARK_MAIN();
