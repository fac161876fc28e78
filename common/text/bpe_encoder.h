// The BPE model of a byte-level tokenizer.json: vocabulary and merges, and the
// encoding of one pre-tokenized word (raw bytes) into token ids.
// Thread-safety: immutable after loading except for an internal cache of
// encoded words (sharded, each shard behind its own mutex), so EncodeWord may
// be called concurrently.
#ifndef HC_COMMON_TEXT_BPE_ENCODER_H_
#define HC_COMMON_TEXT_BPE_ENCODER_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/json.h"

namespace hc {

using TokenId = int32_t;

class BpeEncoder {
 public:
  // Reads model.{type, dropout, vocab, merges, ignore_merges, ...}: BPE
  // without dropout, continuing_subword_prefix or end_of_word_suffix;
  // byte_fallback is accepted (with byte-level input every byte has a token,
  // so it never applies). Every byte's byte-level token must be in the vocab.
  absl::Status Load(const json::Value& model);

  // Appends the ids of `word` (raw bytes, non-empty).
  void EncodeWord(std::string_view word, std::vector<TokenId>* out) const;
  // The same without the cache (the cache's source of truth).
  void EncodeWordUncached(std::string_view word, std::vector<TokenId>* out) const;

  // Vocab entries by byte-level string.
  const absl::flat_hash_map<std::string, TokenId>& vocab() const { return vocab_; }

 private:
  absl::Status LoadOptions(const json::Value& model);
  absl::Status LoadVocab(const json::Value& model);
  absl::Status LoadMerges(const json::Value& model);

  static uint64_t PairKey(TokenId a, TokenId b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  absl::flat_hash_map<std::string, TokenId> vocab_;  // byte-level string -> id
  TokenId byte_ids_[256] = {};                       // id of each single byte
  struct Merge {
    int rank;
    TokenId merged;
  };
  absl::flat_hash_map<uint64_t, Merge> merges_;  // PairKey(left, right)
  bool ignore_merges_ = false;

  // Words seen before, like `tokenizers`' BPE cache: text repeats its words,
  // and a lookup costs far less than the merges. A full shard takes no more
  // entries (no eviction, so no churn).
  static constexpr int kCacheShards = 16;
  static constexpr size_t kCacheEntriesPerShard = 4096;
  static constexpr size_t kCacheMaxWordBytes = 64;
  struct CacheShard {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, absl::InlinedVector<TokenId, 4>> words ABSL_GUARDED_BY(mu);
  };
  mutable std::array<CacheShard, kCacheShards> cache_;
};

}  // namespace hc

#endif  // HC_COMMON_TEXT_BPE_ENCODER_H_
