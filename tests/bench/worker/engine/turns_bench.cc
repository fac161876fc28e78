// Multi-turn serving benchmark of the engine over the real hybrid model:
// N concurrent conversations of M turns, each turn adding a user suffix and
// generating a reply, run twice in one process: with the conversation cache
// (each turn sends only what the worker lacks) and without it (each turn
// recomputes the whole history). Prints the last turn's TTFT with and without
// the cache as a ratio, throughput, and commit latency percentiles.
//
// Usage: turns_bench [--model=synthetic:small] [--conversations=16] [--turns=8]
//                    [--suffix=32] [--reply=16]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "worker/engine/worker_stack.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string model = "synthetic:small";
  int conversations = 16;
  int turns = 8;
  int suffix = 32;
  int reply = 16;
};

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    const auto value = [&](const char* key) -> const char* {
      const std::string k = std::string("--") + key + "=";
      return s.rfind(k, 0) == 0 ? argv[i] + k.size() : nullptr;
    };
    if (auto v = value("model"))
      a.model = v;
    else if (auto v = value("conversations"))
      a.conversations = std::atoi(v);
    else if (auto v = value("turns"))
      a.turns = std::atoi(v);
    else if (auto v = value("suffix"))
      a.suffix = std::atoi(v);
    else if (auto v = value("reply"))
      a.reply = std::atoi(v);
  }
  return a;
}

// One turn's observer: records time to first token and the outcome.
class TurnWaiter final : public hc::engine::TurnObserver {
 public:
  explicit TurnWaiter(Clock::time_point submitted) : submitted_(submitted) {}
  void OnStarted(const hc::engine::TurnStart& s) override { start = s; }
  void OnTokens(std::span<const int32_t> ids, std::span<const float>,
                std::span<const hc::engine::TokenAlternative>) override {
    if (tokens.empty()) ttft = std::chrono::duration<double>(Clock::now() - submitted_).count();
    tokens.insert(tokens.end(), ids.begin(), ids.end());
  }
  void OnCommitted(const hc::engine::TurnResult& r) override {
    result = r;
    done.Notify();
  }
  void OnStateMissing(std::string_view) override { done.Notify(); }
  void OnFailed(const absl::Status& s) override {
    failed = s;
    done.Notify();
  }

  hc::engine::TurnStart start;
  std::vector<int32_t> tokens;
  double ttft = 0;
  std::optional<hc::engine::TurnResult> result;
  absl::Status failed;
  absl::Notification done;

 private:
  Clock::time_point submitted_;
};

struct RunStats {
  std::vector<double> ttft_by_turn;  // mean per turn index
  std::vector<double> commit_seconds;
  double seconds = 0;
  int64_t tokens_generated = 0;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

RunStats RunConversations(hc::engine::Engine& engine, const Args& a, bool use_cache, int vocab) {
  struct Conv {
    std::vector<int32_t> ledger;
    std::optional<hc::cache::RoundStamp> state;
  };
  std::vector<Conv> convs(a.conversations);
  RunStats stats;
  stats.ttft_by_turn.assign(a.turns, 0.0);
  const auto t0 = Clock::now();
  for (int turn = 0; turn < a.turns; ++turn) {
    // All conversations take their turn concurrently.
    std::vector<std::shared_ptr<TurnWaiter>> waiters;
    std::vector<std::vector<int32_t>> suffixes;
    for (int c = 0; c < a.conversations; ++c) {
      std::vector<int32_t> suffix(a.suffix);
      for (int k = 0; k < a.suffix; ++k)
        suffix[k] = 4 + (c * 7919 + turn * 104729 + k * 31) % (vocab - 4);
      hc::engine::TurnSpec t;
      t.key = {use_cache ? "cached" : "scratch", absl::StrCat("conv", c)};
      t.request_id = absl::StrCat(t.key.cache_salt, "/", c, "/", turn);
      t.new_round = turn + 1;
      t.sampling.sampler.temperature = 0.0f;
      t.sampling.max_tokens = a.reply;
      t.sampling.ignore_eos = true;
      Conv& conv = convs[c];
      if (use_cache && conv.state.has_value()) {
        t.expected = conv.state;
        t.suffix.assign(conv.ledger.begin() + conv.state->num_tokens, conv.ledger.end());
        t.suffix.insert(t.suffix.end(), suffix.begin(), suffix.end());
      } else {
        t.has_history = true;
        t.history = conv.ledger;
        t.suffix = suffix;
      }
      auto w = std::make_shared<TurnWaiter>(Clock::now());
      const absl::Status s = engine.Submit(std::move(t), w);
      if (!s.ok()) {
        std::fprintf(stderr, "submit failed: %s\n", s.ToString().c_str());
        std::exit(1);
      }
      waiters.push_back(w);
      suffixes.push_back(std::move(suffix));
    }
    for (int c = 0; c < a.conversations; ++c) {
      TurnWaiter& w = *waiters[c];
      w.done.WaitForNotification();
      if (!w.result.has_value()) {
        std::fprintf(stderr, "turn failed: %s\n", w.failed.ToString().c_str());
        std::exit(1);
      }
      Conv& conv = convs[c];
      conv.ledger.insert(conv.ledger.end(), suffixes[c].begin(), suffixes[c].end());
      conv.ledger.insert(conv.ledger.end(), w.tokens.begin(), w.tokens.end());
      conv.state = w.result->committed;
      stats.ttft_by_turn[turn] += w.ttft / a.conversations;
      stats.commit_seconds.push_back(w.result->commit_seconds);
      stats.tokens_generated += static_cast<int64_t>(w.tokens.size());
      stats.prompt_tokens += w.start.prompt_tokens;
      stats.cached_tokens += w.start.cached_tokens;
    }
  }
  stats.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return stats;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  hc::engine::WorkerStackOptions o;
  o.model = a.model;
  o.kv_cache_bytes = 1ll << 30;
  o.mamba_slots = 2 * a.conversations + 2;
  o.max_batch_tokens = 512;
  o.max_waiting =
      0;  // every conversation submits its turn at once: measure the engine, not admission
  auto stack = hc::engine::WorkerStack::Create(o);
  if (!stack.ok()) {
    std::fprintf(stderr, "%s\n", stack.status().ToString().c_str());
    return 1;
  }
  const int vocab = (*stack)->config().vocab_size;
  std::printf("turns_bench: model %s, %d conversations x %d turns, suffix %d, reply %d tokens\n",
              a.model.c_str(), a.conversations, a.turns, a.suffix, a.reply);
  const RunStats cached = RunConversations((*stack)->engine(), a, /*use_cache=*/true, vocab);
  const RunStats scratch = RunConversations((*stack)->engine(), a, /*use_cache=*/false, vocab);
  std::printf("%-6s %14s %14s %8s\n", "turn", "TTFT cached", "TTFT scratch", "ratio");
  for (int t = 0; t < a.turns; ++t) {
    std::printf("%-6d %12.1fms %12.1fms %7.2fx\n", t + 1, cached.ttft_by_turn[t] * 1e3,
                scratch.ttft_by_turn[t] * 1e3, scratch.ttft_by_turn[t] / cached.ttft_by_turn[t]);
  }
  for (const auto* s : {&cached, &scratch}) {
    std::printf(
        "%s: %.1f s, %.1f generated tok/s, %.1f context tok/s, hit rate %.3f, "
        "commit p50 %.2f us p99 %.2f us\n",
        s == &cached ? "with cache   " : "without cache", s->seconds,
        s->tokens_generated / s->seconds, s->prompt_tokens / s->seconds,
        s->prompt_tokens ? static_cast<double>(s->cached_tokens) / s->prompt_tokens : 0.0,
        Percentile(s->commit_seconds, 0.5) * 1e6, Percentile(s->commit_seconds, 0.99) * 1e6);
  }
  std::printf("turn-%d TTFT ratio (without / with cache): %.2fx\n", a.turns,
              scratch.ttft_by_turn.back() / cached.ttft_by_turn.back());
  std::printf("commit p99 %.2f us (goal <= 100 us)\n",
              Percentile(cached.commit_seconds, 0.99) * 1e6);
  return 0;
}
