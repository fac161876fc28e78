// Tokenizer costs on the router's hot path: rendering + encoding one chat
// turn's suffix, encoding long text, and streaming decode per token. Uses the
// synthetic `small` preset's tokenizer (8K vocab, trained on the embedded corpus).
#include <benchmark/benchmark.h>

#include <cstdio>

#include "common/text/bpe_trainer.h"
#include "common/text/chat_template.h"
#include "common/text/synthetic_corpus.h"
#include "common/text/synthetic_tokenizer.h"
#include "common/text/tokenizer.h"

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

}  // namespace

BENCHMARK_MAIN();
