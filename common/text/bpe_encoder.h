// The BPE model of a byte-level tokenizer.json: vocabulary and merges, and the
// encoding of one pre-tokenized word (raw bytes) into token ids.
// Thread-safety: immutable after loading.
#ifndef HC_COMMON_TEXT_BPE_ENCODER_H_
#define HC_COMMON_TEXT_BPE_ENCODER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
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
};

}  // namespace hc

#endif  // HC_COMMON_TEXT_BPE_ENCODER_H_
