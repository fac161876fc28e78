// Tokenizer costs on the router's hot path: rendering + encoding one chat
// turn's suffix, encoding long text, and streaming decode per token. Uses the
// synthetic `small` preset's tokenizer (8K vocab, trained on the embedded corpus).
//
// Before the Google Benchmark cases it prints, measured in this run, the
// encoding speed of a large mixed text with the GPT-2 split run by Oniguruma
// and the BPE word cache (the tokenizer now) against the hand-written split
// and uncached BPE it replaced (the same merges), and the splits alone.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>

#include "common/json.h"
#include "common/text/bpe_trainer.h"
#include "common/text/chat_template.h"
#include "common/text/synthetic_corpus.h"
#include "common/text/synthetic_tokenizer.h"
#include "common/text/tokenizer.h"
#include "common/utf8.h"
#include "tests/bench/common/text/legacy_gpt2_split.h"

namespace {

const hc::Tokenizer& Tok() {
  static const hc::Tokenizer* tok = [] {
    auto spec = hc::SyntheticTokenizerSpecFor("small");
    auto t = hc::Tokenizer::FromJson(hc::BpeTokenizerJson(hc::TrainSyntheticTokenizer(*spec)));
    return t->release();
  }();
  return *tok;
}

const std::vector<hc::ChatMessage>& Turn() {
  static const auto* msgs = new std::vector<hc::ChatMessage>{
      {"user",
       "Can you help me plan a trip to the mountains? I have four days, I like hiking but not "
       "too hard, and I would like to see a lake and a village. What should I pack? "
       "\xF0\x9F\x8F\x94"}};
  return *msgs;
}

void BM_RenderAndEncodeTurn(benchmark::State& state) {
  const hc::ChatTemplate tmpl = hc::ChatTemplate::ByName("granite").value();
  size_t tokens = 0, bytes = 0;
  for (auto _ : state) {
    const std::string text = tmpl.RenderText(Turn(), true).value();
    auto ids = Tok().Encode(text);
    benchmark::DoNotOptimize(ids.data());
    tokens += ids.size();
    bytes += text.size();
  }
  state.counters["tokens/turn"] = static_cast<double>(tokens) / state.iterations();
  state.counters["bytes/s"] =
      benchmark::Counter(static_cast<double>(bytes), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_RenderAndEncodeTurn);

void BM_EncodeCorpus(benchmark::State& state) {
  const std::string text(hc::SyntheticCorpus());
  size_t tokens = 0;
  for (auto _ : state) {
    auto ids = Tok().Encode(text);
    benchmark::DoNotOptimize(ids.data());
    tokens += ids.size();
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
  state.counters["bytes/s"] = benchmark::Counter(
      static_cast<double>(text.size()) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_EncodeCorpus);

// Streaming decode of the corpus' tokens vs one batch Decode of the same ids
// (compare their tokens/s).
void BM_StreamingDecode(benchmark::State& state) {
  const auto ids = Tok().Encode(std::string(hc::SyntheticCorpus()));
  for (auto _ : state) {
    hc::StreamingDecoder dec(&Tok());
    size_t n = 0;
    for (hc::TokenId id : ids) n += dec.Push(id).size();
    benchmark::DoNotOptimize(n);
  }
  state.counters["tokens/s"] = benchmark::Counter(
      static_cast<double>(ids.size()) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_StreamingDecode);

void BM_BatchDecode(benchmark::State& state) {
  const auto ids = Tok().Encode(std::string(hc::SyntheticCorpus()));
  for (auto _ : state) {
    auto text = Tok().Decode(ids);
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["tokens/s"] = benchmark::Counter(
      static_cast<double>(ids.size()) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_BatchDecode);

// ~2 MB: the augmented corpus (mostly English) and generated text in many
// scripts, code and whitespace runs.
std::string MixedText() {
  std::string text;
  std::mt19937_64 rng(5);
  const std::pair<uint32_t, uint32_t> ranges[] = {
      {0x61, 0x7A},     {0x41, 0x5A},     {0x30, 0x39},       {0x20, 0x20},     {0xC0, 0x24F},
      {0x391, 0x3C9},   {0x410, 0x44F},   {0x621, 0x64A},     {0x905, 0x939},   {0xE01, 0xE30},
      {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0x1F600, 0x1F64F}, {0x2000, 0x200A}, {0x21, 0x2F}};
  while (text.size() < (2u << 20)) {
    const auto [lo, hi] = ranges[rng() % std::size(ranges)];
    const int run = 1 + static_cast<int>(rng() % 8);
    for (int k = 0; k < run; ++k) hc::utf8::Append(lo + rng() % (hi - lo + 1), &text);
    if (rng() % 3 == 0) text += rng() % 5 == 0 ? "\n" : " ";
  }
  return text;
}

// Best-of-5 times of `a` and `b`, run alternately so that both see the same
// machine load (these machines are shared and noisy).
std::pair<double, double> BestTimes(const std::function<void()>& a,
                                    const std::function<void()>& b) {
  double best_a = 1e30, best_b = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    for (int which = 0; which < 2; ++which) {
      const auto t0 = std::chrono::steady_clock::now();
      (which == 0 ? a : b)();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      double& best = which == 0 ? best_a : best_b;
      best = std::min(best, s);
    }
  }
  return {best_a, best_b};
}

void CompareWithLegacySplit(const char* name, const std::string& text) {
  auto spec = hc::SyntheticTokenizerSpecFor("small");
  auto doc = hc::json::Parse(hc::BpeTokenizerJson(hc::TrainSyntheticTokenizer(*spec)));
  hc::BpeEncoder bpe;
  if (!doc.ok() || !bpe.Load(*doc->Find("model")).ok()) return;
  std::vector<hc::TokenId> before, after;
  const auto [t_before, t_after] = BestTimes(
      [&] {
        before.clear();
        for (std::string_view w : hc::bench_reference::LegacySplitGpt2(text)) {
          bpe.EncodeWordUncached(w, &before);  // the old tokenizer had no word cache
        }
      },
      [&] { after = Tok().Encode(text); });
  size_t pieces_before = 0, pieces_after = 0;
  const auto [s_before, s_after] =
      BestTimes([&] { pieces_before = hc::bench_reference::LegacySplitGpt2(text).size(); },
                [&] { pieces_after = hc::SplitGpt2(text).size(); });
  std::printf("Encode %.2f MB of %s (best of 5, alternating, this run):\n", text.size() / 1e6,
              name);
  std::printf("  before (hand-written split + BPE):      %10.0f tokens/s (%zu tokens)\n",
              before.size() / t_before, before.size());
  std::printf(
      "  after  (Oniguruma split + cached BPE): %10.0f tokens/s (%zu tokens)  after/before %.2f\n",
      after.size() / t_after, after.size(), t_before / t_after);
  std::printf(
      "  split alone: before %.1f MB/s (%zu pieces), after %.1f MB/s (%zu pieces)  "
      "after/before %.2f\n",
      text.size() / s_before / 1e6, pieces_before, text.size() / s_after / 1e6, pieces_after,
      s_before / s_after);
}

}  // namespace

int main(int argc, char** argv) {
  CompareWithLegacySplit("English text (the augmented synthetic corpus)",
                         hc::AugmentedSyntheticCorpus(24));
  CompareWithLegacySplit("text in many scripts, emoji and symbols", MixedText());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
