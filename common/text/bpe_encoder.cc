#include "common/text/bpe_encoder.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/text/byte_level.h"

namespace hc {
namespace {
constexpr int64_t kMaxId = 1 << 24;
}  // namespace

absl::Status BpeEncoder::Load(const json::Value& model) {
  HC_RETURN_IF_ERROR(LoadOptions(model));
  HC_RETURN_IF_ERROR(LoadVocab(model));
  return LoadMerges(model);
}

absl::Status BpeEncoder::LoadOptions(const json::Value& model) {
  if (const json::Value* type = model.Find("type");
      type && (!type->is_string() || type->AsString() != "BPE")) {
    return absl::UnimplementedError(absl::StrCat(
        "tokenizer.json: model type ", type->is_string() ? type->AsString() : "(not a string)",
        " is not supported (only BPE)"));
  }
  if (const json::Value* d = model.Find("dropout"); d && !d->is_null()) {
    return absl::UnimplementedError("tokenizer.json: BPE dropout is not supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json::Value* v = model.Find(key);
    if (v && !v->is_null() && !(v->is_string() && v->AsString().empty())) {
      return absl::UnimplementedError(
          absl::StrCat("tokenizer.json: BPE ", key, " is not supported"));
    }
  }
  if (const json::Value* v = model.Find("ignore_merges"); v && v->is_bool()) {
    ignore_merges_ = v->AsBool();
  }
  return absl::OkStatus();
}

absl::Status BpeEncoder::LoadVocab(const json::Value& model) {
  const json::Value* vocab = model.Find("vocab");
  if (!vocab || !vocab->is_object()) {
    return absl::InvalidArgumentError("tokenizer.json: model.vocab must be an object");
  }
  for (const auto& [token, idv] : vocab->AsObject()) {
    if (!idv.is_int() || idv.AsInt64() < 0 || idv.AsInt64() >= kMaxId) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json: vocab entry \"", token, "\" has an invalid id"));
    }
    vocab_[token] = static_cast<TokenId>(idv.AsInt64());
  }
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(ByteToUnicode(static_cast<uint8_t>(b)));
    if (it == vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json: vocab lacks the byte-level token for byte ", b));
    }
    byte_ids_[b] = it->second;
  }
  return absl::OkStatus();
}

absl::Status BpeEncoder::LoadMerges(const json::Value& model) {
  const json::Value* merges = model.Find("merges");
  if (!merges || !merges->is_array()) {
    return absl::InvalidArgumentError("tokenizer.json: model.merges must be an array");
  }
  int rank = 0;
  for (const json::Value& m : merges->AsArray()) {
    std::string left, right;
    if (m.is_string()) {
      const std::string& s = m.AsString();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: bad merge \"", s, "\""));
      }
      left = s.substr(0, sp);
      right = s.substr(sp + 1);
    } else if (m.is_array() && m.AsArray().size() == 2 && m.AsArray()[0].is_string() &&
               m.AsArray()[1].is_string()) {
      left = m.AsArray()[0].AsString();
      right = m.AsArray()[1].AsString();
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json: merge #", rank, " is neither \"a b\" nor [a, b]"));
    }
    auto l = vocab_.find(left), r = vocab_.find(right), merged = vocab_.find(left + right);
    if (l == vocab_.end() || r == vocab_.end() || merged == vocab_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: merge \"", left, " ", right,
                                                     "\" refers to tokens not in the vocab"));
    }
    merges_.try_emplace(PairKey(l->second, r->second), Merge{rank, merged->second});
    ++rank;
  }
  return absl::OkStatus();
}

void BpeEncoder::EncodeWord(std::string_view word, std::vector<TokenId>* out) const {
  if (word.size() == 1 || word.size() > kCacheMaxWordBytes) {
    EncodeWordUncached(word, out);
    return;
  }
  const absl::string_view key(word.data(), word.size());
  CacheShard& shard = cache_[absl::Hash<absl::string_view>()(key) % kCacheShards];
  {
    absl::MutexLock lock(&shard.mu);
    auto it = shard.words.find(key);
    if (it != shard.words.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out->size();
  EncodeWordUncached(word, out);
  absl::MutexLock lock(&shard.mu);
  if (shard.words.size() < kCacheEntriesPerShard) {
    shard.words.try_emplace(std::string(word), out->begin() + first, out->end());
  }
}

// BPE over one pre-tokenized word, as the `tokenizers` library does it: the
// adjacent pairs that have a merge sit in a min-heap by (rank, position); the
// best is merged, its two neighbour pairs are pushed, and entries made stale
// by an earlier merge are skipped when popped. O(n log n) in the word's bytes.
void BpeEncoder::EncodeWordUncached(std::string_view word, std::vector<TokenId>* out) const {
  if (ignore_merges_) {
    auto it = vocab_.find(ByteLevelEncode(word));
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  const int n = static_cast<int>(word.size());
  if (n == 1) {
    out->push_back(byte_ids_[static_cast<unsigned char>(word[0])]);
    return;
  }
  // Symbols as a doubly linked list over the word's bytes; a merged-away
  // symbol gets id -1.
  struct Symbol {
    TokenId id;
    int32_t prev, next;
  };
  std::vector<Symbol> sym(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    sym[i] = Symbol{byte_ids_[static_cast<unsigned char>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  struct Candidate {
    int32_t rank, pos;
    TokenId merged;
    // std::push_heap builds a max-heap: "less" means later rank, then later
    // position.
    bool operator<(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::vector<Candidate> heap;
  const auto push = [&](int pos) {
    const int next = sym[pos].next;
    if (next < 0) return;
    auto it = merges_.find(PairKey(sym[pos].id, sym[next].id));
    if (it == merges_.end()) return;
    heap.push_back(Candidate{it->second.rank, pos, it->second.merged});
    std::push_heap(heap.begin(), heap.end());
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& left = sym[c.pos];
    if (left.id < 0 || left.next < 0) continue;  // merged away, or now last
    const int right_pos = left.next;
    // Stale when the pair at this position changed since it was queued.
    auto it = merges_.find(PairKey(left.id, sym[right_pos].id));
    if (it == merges_.end() || it->second.merged != c.merged) continue;
    left.id = c.merged;
    left.next = sym[right_pos].next;
    sym[right_pos].id = -1;
    if (left.next >= 0) sym[left.next].prev = c.pos;
    if (left.prev >= 0) push(left.prev);
    push(c.pos);
  }
  for (int i = 0; i >= 0; i = sym[i].next) out->push_back(sym[i].id);
}

}  // namespace hc
