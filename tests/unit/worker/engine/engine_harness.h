// Shared by the engine tests: a harness running a real Engine over a real
// ConversationCache and the FakeModel, an observer that records a turn's
// events, and a Conversation that plays the router (ledger, expected state,
// resend on StateMissing, stop-string cuts with re-tokenization).
#ifndef HC_TESTS_UNIT_WORKER_ENGINE_ENGINE_HARNESS_H_
#define HC_TESTS_UNIT_WORKER_ENGINE_ENGINE_HARNESS_H_

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/unit/worker/engine/fake_model.h"
#include "tests/unit/worker/runtime/host_cache_memory.h"
#include "worker/cache/conversation_cache.h"
#include "worker/engine/engine.h"

namespace hc::engine::testing {

using cache::ConversationKey;
using cache::RoundStamp;

inline constexpr int kVocab = 97;
inline constexpr int kEos = 3;

// The test vocabulary's text: ids 0..3 add no bytes (specials, EOS among
// them), ids 4..29 are the letters a..z, and ids 30..96 are strings of two
// or three letters, so stop strings can begin inside a token.
inline std::string_view TokenText(int32_t id) {
  static const std::array<std::string, kVocab>* const table = [] {
    auto* t = new std::array<std::string, kVocab>();
    for (int id = 4; id < 30; ++id) (*t)[id] = std::string(1, static_cast<char>('a' + id - 4));
    for (int id = 30; id < kVocab; ++id) {
      const int k = id - 30;
      for (int i = 0; i < 2 + k % 2; ++i)
        (*t)[id] += static_cast<char>('a' + (k * 7 + i * 11 + 3) % 26);
    }
    return t;
  }();
  return (*table)[id];
}

inline std::string Text(std::span<const int32_t> ids) {
  std::string s;
  for (const int32_t id : ids) s += TokenText(id);
  return s;
}

// Tokens whose text is `letters` (a..z only), one letter each: what the
// router's re-tokenization of a cut token's leading bytes gives.
inline std::vector<int32_t> Retokenize(std::string_view letters) {
  std::vector<int32_t> ids;
  for (const char c : letters) ids.push_back(4 + (c - 'a'));
  return ids;
}

// Collects one turn's events; `done` fires on the terminal event. Its fields
// are written on the engine thread: read them after `done`. Like every
// TurnObserver it must not block, so `on_tokens` must not either (a test that
// needs the engine held mid-turn blocks it in the model: GatedModel).
class Recorder final : public TurnObserver {
 public:
  void OnStarted(const TurnStart& s) override {
    start = s;
    ++started;
  }
  void OnTokens(std::span<const int32_t> ids, std::span<const float> lp,
                std::span<const TokenAlternative> alternatives) override {
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    logprobs.insert(logprobs.end(), lp.begin(), lp.end());
    top.insert(top.end(), alternatives.begin(), alternatives.end());
    if (on_tokens) on_tokens(*this);
  }
  void OnCommitted(const TurnResult& r) override {
    result = r;
    done.Notify();
  }
  void OnStateMissing(std::string_view reason) override {
    missing = std::string(reason);
    done.Notify();
  }
  void OnFailed(const absl::Status& s) override {
    failed = s;
    done.Notify();
  }

  std::function<void(Recorder&)> on_tokens;
  int started = 0;
  TurnStart start;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<TokenAlternative> top;  // top_logprobs alternatives, token by token
  std::optional<TurnResult> result;
  std::optional<std::string> missing;
  absl::Status failed;
  absl::Notification done;
};

// Counts the load refusals the engine reports (from submitting threads).
class RejectionCounter final : public EngineMetricsSink {
 public:
  void OnRejected(std::string_view reason) override {
    absl::MutexLock lock(&mu_);
    ++rejected_[std::string(reason)];
  }
  int rejected(const std::string& reason) const {
    absl::MutexLock lock(&mu_);
    auto it = rejected_.find(reason);
    return it == rejected_.end() ? 0 : it->second;
  }
  void OnLookup(cache::LookupResult) override {}
  void OnPrefixQuery(int64_t, int64_t) override {}
  void OnFirstToken(double) override {}
  void OnInterToken(double) override {}
  void OnCommit(std::string_view, double) override {}
  void OnStep(const cache::CacheCounters&, int, int) override {}

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, int> rejected_ ABSL_GUARDED_BY(mu_);
};

struct HarnessOptions {
  int kv_blocks = 256;
  int mamba_slots = 32;
  int block_size = 4;
  int max_batch_tokens = 16;
  int max_model_len = 4096;
  int max_waiting = 256;
};

class Harness {
 public:
  explicit Harness(HarnessOptions o = {}) {
    memory_ = runtime::testing::MakeHostCacheMemory({.num_layers = 1,
                                                     .num_blocks = o.kv_blocks,
                                                     .block_size = o.block_size,
                                                     .num_kv_heads = 1,
                                                     .head_dim = 1},
                                                    {.num_layers = 1,
                                                     .num_slots = o.mamba_slots,
                                                     .conv_dim = 1,
                                                     .conv_width = 2,
                                                     .num_heads = 1,
                                                     .head_dim = 1,
                                                     .state_size = 1},
                                                    1)
                  .value();
    cache_ = cache::ConversationCache::Create({.memory = memory_.get()}).value();
    model_ = std::make_unique<FakeModel>(memory_.get(), kVocab);
    gate_ = std::make_unique<GatedModel>(model_.get());
    EngineOptions eo;
    eo.model = gate_.get();
    eo.cache = cache_.get();
    eo.metrics = &metrics_;
    eo.max_batch_tokens = o.max_batch_tokens;
    eo.max_model_len = o.max_model_len;
    eo.max_waiting = o.max_waiting;
    eo.eos_token_id = kEos;
    eo.token_bytes = [this](int32_t id) {
      token_bytes_calls_.fetch_add(1);
      return TokenText(id);
    };
    engine_ = Engine::Create(eo).value();
  }

  std::shared_ptr<Recorder> Start(TurnSpec turn) {
    auto rec = std::make_shared<Recorder>();
    const absl::Status s = engine_->Submit(std::move(turn), rec);
    EXPECT_TRUE(s.ok()) << s;
    return rec;
  }
  std::shared_ptr<Recorder> Run(TurnSpec turn) {
    auto rec = Start(std::move(turn));
    rec->done.WaitForNotification();
    return rec;
  }

  // Forgets the committed state of `key` and waits for the engine's answer.
  bool ForgetAndWait(const ConversationKey& key) {
    absl::Notification done;
    bool released = false;
    engine_->Forget(key, [&](bool r) {
      released = r;
      done.Notify();
    });
    done.WaitForNotification();
    return released;
  }

  Engine& engine() { return *engine_; }
  cache::ConversationCache& cache() { return *cache_; }  // only while idle
  FakeModel& model() { return *model_; }
  GatedModel& gate() { return *gate_; }
  const RejectionCounter& metrics() const { return metrics_; }
  int64_t token_bytes_calls() const { return token_bytes_calls_.load(); }

 private:
  RejectionCounter metrics_;
  std::atomic<int64_t> token_bytes_calls_{0};
  std::unique_ptr<runtime::BackendCacheMemory> memory_;
  std::unique_ptr<cache::ConversationCache> cache_;
  std::unique_ptr<FakeModel> model_;
  std::unique_ptr<GatedModel> gate_;
  std::unique_ptr<Engine> engine_;
};

inline TurnSampling Greedy(int max_tokens) {
  TurnSampling s;
  s.sampler.temperature = 0.0f;
  s.max_tokens = max_tokens;
  s.ignore_eos = true;
  return s;
}

// A fresh single-turn conversation `id` (request id `id`).
inline TurnSpec FreshTurn(const std::string& id, int max_tokens = 2) {
  TurnSpec t;
  t.key = {"", id};
  t.request_id = id;
  t.suffix = {5, 6, 7};
  t.sampling = Greedy(max_tokens);
  return t;
}

// Plays the router: keeps the ledger (every token) and the worker's committed
// stamp, sends only what the worker lacks, and resends with the history when
// the worker reports its state missing.
class Conversation {
 public:
  Conversation(Harness* h, std::string id, std::string salt = "")
      : h_(h), key_{std::move(salt), std::move(id)} {}

  std::shared_ptr<Recorder> Turn(const std::vector<int32_t>& new_tokens, int max_tokens,
                                 bool use_cache = true,
                                 std::vector<std::string> stop_strings = {}) {
    TurnSpec t;
    t.key = key_;
    t.request_id = absl::StrCat(key_.conversation_id, "/", round_ + 1, "/", attempt_++);
    t.new_round = round_ + 1;
    t.sampling = Greedy(max_tokens);
    t.sampling.stop_strings = std::move(stop_strings);
    // A state of 0 tokens is no state: send the history (as the router does).
    if (use_cache && stamp_.has_value() && stamp_->num_tokens > 0) {
      t.expected = stamp_;
      t.suffix.assign(ledger_.begin() + stamp_->num_tokens, ledger_.end());
      t.suffix.insert(t.suffix.end(), new_tokens.begin(), new_tokens.end());
    } else {
      t.has_history = true;
      t.history = ledger_;
      t.suffix = new_tokens;
    }
    auto rec = h_->Run(t);
    if (rec->missing.has_value()) {
      ++resends_;
      TurnSpec again = t;
      again.expected.reset();
      again.has_history = true;
      again.history = ledger_;
      again.suffix = new_tokens;
      again.request_id += "/resend";
      rec = h_->Run(again);
    }
    if (rec->result.has_value()) {
      ledger_.insert(ledger_.end(), new_tokens.begin(), new_tokens.end());
      if (const auto& cut = rec->result->stop_string; cut.has_value()) {
        // The reply ends where the stop string begins: whole tokens before
        // it, then the re-tokenized leading bytes of the token it begins in.
        const auto before = std::span<const int32_t>(rec->tokens).first(cut->tokens_before);
        ledger_.insert(ledger_.end(), before.begin(), before.end());
        const std::string_view cut_token = TokenText(rec->tokens[cut->tokens_before]);
        const auto lead = Retokenize(cut_token.substr(0, cut->reply_bytes - Text(before).size()));
        ledger_.insert(ledger_.end(), lead.begin(), lead.end());
      } else {
        ledger_.insert(ledger_.end(), rec->tokens.begin(), rec->tokens.end());
      }
      stamp_ = rec->result->committed;
      round_ = stamp_->round;
    }
    return rec;
  }

  const std::vector<int32_t>& ledger() const { return ledger_; }
  const ConversationKey& key() const { return key_; }
  std::optional<RoundStamp> stamp() const { return stamp_; }
  int resends() const { return resends_; }

 private:
  Harness* h_;
  ConversationKey key_;
  std::vector<int32_t> ledger_;
  std::optional<RoundStamp> stamp_;
  uint64_t round_ = 0;
  int attempt_ = 0;
  int resends_ = 0;
};

inline std::vector<int32_t> RandomTokens(std::mt19937& rng, int n) {
  std::uniform_int_distribution<int> d(4, kVocab - 1);
  std::vector<int32_t> v(n);
  for (auto& t : v) t = d(rng);
  return v;
}

}  // namespace hc::engine::testing

#endif  // HC_TESTS_UNIT_WORKER_ENGINE_ENGINE_HARNESS_H_
