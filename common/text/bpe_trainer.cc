#include "common/text/bpe_trainer.h"

#include <deque>
#include <map>
#include <set>
#include <tuple>

#include "absl/algorithm/container.h"
#include "absl/container/flat_hash_map.h"
#include "common/json.h"
#include "common/text/byte_level.h"
#include "common/text/pre_tokenizer.h"

namespace hc {
namespace {

uint64_t Key(int a, int b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct Word {
  std::vector<int> symbols;
  int64_t count;
};

// Pair statistics with an ordered index for "most frequent first".
class PairStats {
 public:
  void Add(int a, int b, int64_t delta, int word) {
    const uint64_t k = Key(a, b);
    int64_t& c = counts_[k];
    if (c > 0) order_.erase({-c, a, b});
    c += delta;
    if (c > 0) order_.insert({-c, a, b});
    if (delta > 0) where_[k].push_back(word);
  }
  bool Empty() const { return order_.empty(); }
  std::tuple<int64_t, int, int> Best() const { return *order_.begin(); }
  std::vector<int> TakeWords(int a, int b) {
    auto it = where_.find(Key(a, b));
    if (it == where_.end()) return {};
    std::vector<int> w = std::move(it->second);
    where_.erase(it);
    absl::c_sort(w);
    w.erase(std::unique(w.begin(), w.end()), w.end());
    return w;
  }

 private:
  absl::flat_hash_map<uint64_t, int64_t> counts_;
  absl::flat_hash_map<uint64_t, std::vector<int>> where_;
  std::set<std::tuple<int64_t, int, int>> order_;
};

}  // namespace

BpeModel TrainBpe(std::string_view corpus, const BpeTrainerOptions& options) {
  BpeModel model;
  model.vocab = options.special_tokens;
  model.num_special = static_cast<int>(options.special_tokens.size());
  absl::flat_hash_map<std::string, int> ids;
  for (int b = 0; b < 256; ++b) {
    const std::string& s = ByteToUnicode(static_cast<uint8_t>(b));
    ids[s] = static_cast<int>(model.vocab.size());
    model.vocab.push_back(s);
  }
  const int byte_base = model.num_special;

  model.pre_tokenizer = options.pre_tokenizer;
  std::map<std::string_view, int64_t> word_counts;  // ordered: deterministic word indices
  std::deque<std::string> arena;                    // owns pieces that are not views of corpus
  if (options.pre_tokenizer == PreTokenizerStyle::kGpt2) {
    for (std::string_view piece : SplitGpt2(corpus)) ++word_counts[piece];
  } else {
    const json::Value spec = PreTokenizerStyleJson(options.pre_tokenizer);
    auto pre = PreTokenizer::FromJson(&spec);  // our own spec: always supported
    std::vector<std::string_view> words;
    if (pre.ok() && !corpus.empty()) (*pre)->Run(corpus, &words, &arena);
    for (std::string_view piece : words) ++word_counts[piece];
  }
  std::vector<Word> words;
  words.reserve(word_counts.size());
  for (const auto& [text, count] : word_counts) {
    Word w{{}, count};
    for (unsigned char b : text) w.symbols.push_back(byte_base + b);
    words.push_back(std::move(w));
  }

  PairStats stats;
  for (int w = 0; w < static_cast<int>(words.size()); ++w) {
    const auto& s = words[w].symbols;
    for (size_t i = 0; i + 1 < s.size(); ++i) stats.Add(s[i], s[i + 1], words[w].count, w);
  }

  while (static_cast<int>(model.vocab.size()) < options.vocab_size && !stats.Empty()) {
    const auto [neg_count, a, b] = stats.Best();
    if (-neg_count < options.min_frequency) break;
    std::string merged_str = model.vocab[a] + model.vocab[b];
    int merged;
    if (auto it = ids.find(merged_str); it != ids.end()) {
      merged = it->second;
    } else {
      merged = static_cast<int>(model.vocab.size());
      ids[merged_str] = merged;
      model.vocab.push_back(std::move(merged_str));
    }
    model.merges.emplace_back(model.vocab[a], model.vocab[b]);
    for (int w : stats.TakeWords(a, b)) {
      auto& s = words[w].symbols;
      const int64_t c = words[w].count;
      bool present = false;
      for (size_t i = 0; i + 1 < s.size(); ++i) present |= (s[i] == a && s[i + 1] == b);
      if (!present) continue;
      for (size_t i = 0; i + 1 < s.size(); ++i) stats.Add(s[i], s[i + 1], -c, w);
      std::vector<int> next;
      next.reserve(s.size());
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          next.push_back(merged);
          i += 2;
        } else {
          next.push_back(s[i++]);
        }
      }
      s.swap(next);
      for (size_t i = 0; i + 1 < s.size(); ++i) stats.Add(s[i], s[i + 1], c, w);
    }
  }
  return model;
}

std::string BpeTokenizerJson(const BpeModel& model) {
  using json::Value;
  Value root = Value::MakeObject();
  root.Set("version", Value::String("1.0"));
  root.Set("truncation", Value());
  root.Set("padding", Value());
  Value added = Value::MakeArray();
  for (int id = 0; id < model.num_special; ++id) {
    Value t = Value::MakeObject();
    t.Set("id", Value::Int(id));
    t.Set("content", Value::String(model.vocab[id]));
    t.Set("single_word", Value::Bool(false));
    t.Set("lstrip", Value::Bool(false));
    t.Set("rstrip", Value::Bool(false));
    t.Set("normalized", Value::Bool(false));
    t.Set("special", Value::Bool(true));
    added.Append(std::move(t));
  }
  root.Set("added_tokens", std::move(added));
  root.Set("normalizer", Value());
  auto byte_level = [](bool add_prefix_space, bool trim_offsets) {
    Value v = Value::MakeObject();
    v.Set("type", Value::String("ByteLevel"));
    v.Set("add_prefix_space", Value::Bool(add_prefix_space));
    v.Set("trim_offsets", Value::Bool(trim_offsets));
    v.Set("use_regex", Value::Bool(true));
    return v;
  };
  root.Set("pre_tokenizer", PreTokenizerStyleJson(model.pre_tokenizer));
  root.Set("post_processor", byte_level(false, false));
  root.Set("decoder", byte_level(true, true));
  Value bpe = Value::MakeObject();
  bpe.Set("type", Value::String("BPE"));
  bpe.Set("dropout", Value());
  bpe.Set("unk_token", Value());
  bpe.Set("continuing_subword_prefix", Value());
  bpe.Set("end_of_word_suffix", Value());
  bpe.Set("fuse_unk", Value::Bool(false));
  bpe.Set("byte_fallback", Value::Bool(false));
  bpe.Set("ignore_merges", Value::Bool(false));
  Value vocab = Value::MakeObject();
  vocab.MutableObject().reserve(model.vocab.size());
  for (size_t id = 0; id < model.vocab.size(); ++id) {
    vocab.MutableObject().emplace_back(model.vocab[id], Value::Int(static_cast<int64_t>(id)));
  }
  bpe.Set("vocab", std::move(vocab));
  Value merges = Value::MakeArray();
  for (const auto& [l, r] : model.merges) merges.Append(Value::String(l + " " + r));
  bpe.Set("merges", std::move(merges));
  root.Set("model", std::move(bpe));
  return json::Serialize(root, {.indent = 2});
}

}  // namespace hc
