// Per-step cost of stop-string matching, as the engine pays it for each
// generated token: 16 stop strings of 256 bytes (the limits) against none,
// and against the rescan the engine did before the matcher (decode the last
// longest+1 tokens and search every stop string in them). Prints ns per step
// and the ratios.
//
// Usage: stop_matcher_bench [--steps=200000]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "common/text/stop_limits.h"
#include "common/text/stop_matcher.h"

namespace {

using Clock = std::chrono::steady_clock;

// Keeps a value alive so the compiler cannot drop the work.
volatile int64_t sink = 0;

template <typename F>
double NsPerStep(int steps, F&& step) {
  const auto start = Clock::now();
  for (int i = 0; i < steps; ++i) sink = sink + step(i);
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count() / steps;
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 200000;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--steps=", 8) == 0) steps = std::atoi(argv[i] + 8);
  }
  // A vocabulary of 1-6 letter tokens and a generated stream over it.
  std::mt19937 rng(1);
  std::vector<std::string> vocab(4096);
  for (auto& t : vocab) {
    t.resize(1 + rng() % 6);
    for (char& c : t) c = static_cast<char>('a' + rng() % 4);  // few letters: many partial matches
  }
  std::vector<int> stream(static_cast<size_t>(steps));
  for (int& id : stream) id = static_cast<int>(rng() % vocab.size());
  // 16 stop strings of 256 bytes over the same letters, sharing long
  // prefixes (the automaton's worst case for failure links), never matching.
  std::vector<std::string> stops;
  for (int i = 0; i < hc::kMaxStopStrings; ++i) {
    std::string s(hc::kMaxStopStringBytes - 1, 'a' + i % 4);
    s += 'z';
    stops.push_back(s);
  }

  // Baseline: the per-step check with no stop strings (EOS / stop ids only).
  const double none = NsPerStep(steps, [&](int i) { return stream[i] == 3 ? 1 : 0; });

  hc::StopMatcher matcher(stops);
  const double incremental = NsPerStep(steps, [&](int i) {
    const int eos = stream[i] == 3 ? 1 : 0;
    return eos + (matcher.Feed(vocab[stream[i]]).has_value() ? 1 : 0);
  });

  // The old per-step rescan: decode the last 257 tokens, search each string.
  const int rescan_steps = std::max(1, steps / 100);
  const double rescan = NsPerStep(rescan_steps, [&](int i) {
    std::string tail;
    const int from = std::max(0, i + 1 - static_cast<int>(hc::kMaxStopStringBytes) - 1);
    for (int k = from; k <= i; ++k) tail += vocab[stream[k]];
    int found = 0;
    for (const auto& s : stops) found += absl::StrContains(tail, s) ? 1 : 0;
    return found;
  });

  std::printf("stop matching per step (%d steps, %d stop strings of %zu bytes)\n", steps,
              hc::kMaxStopStrings, hc::kMaxStopStringBytes);
  std::printf("  no stop strings          %10.1f ns/step\n", none);
  std::printf("  incremental matcher      %10.1f ns/step  (%zu automaton states)\n", incremental,
              matcher.num_states());
  std::printf("  rescan (before)          %10.1f ns/step\n", rescan);
  std::printf("ratio incremental / none: %.1fx (+%.1f ns/step)\n", incremental / none,
              incremental - none);
  std::printf("ratio rescan / incremental: %.1fx\n", rescan / incremental);
  return 0;
}
