// Byte-level BPE tokenizer that reads Hugging Face `tokenizer.json` files
// (GPT-2 / Granite style) and encodes/decodes exactly like the `tokenizers`
// library for the supported subset:
//
//   normalizer:     null
//   pre_tokenizer:  ByteLevel (use_regex true: the GPT-2 split; add_prefix_space
//                   honoured)
//   model:          BPE with vocab + merges (either "a b" strings or [a, b]
//                   pairs), ignore_merges honoured, no dropout, no unk
//   decoder:        ByteLevel
//   added_tokens:   matched in the raw text before pre-tokenization, longest
//                   match first (lstrip/rstrip/single_word/normalized are not
//                   supported and treated as false)
//
// The GPT-2 split regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// is implemented by hand. Character classes are exact for ASCII; for code
// points >= 0x80 a compact table covers Unicode whitespace, the common digit
// blocks, Latin-1 / general punctuation and symbols, combining marks, CJK
// punctuation and emoji; every other code point counts as a letter. Text in
// scripts outside the table may therefore split differently from the
// `tokenizers` library; round trips are exact regardless.
//
// Thread-safety: a Tokenizer is immutable after loading; all const methods
// may be called concurrently. A StreamingDecoder is single-threaded.
#ifndef HC_COMMON_TEXT_TOKENIZER_H_
#define HC_COMMON_TEXT_TOKENIZER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace hc {

namespace json {
class Value;
}  // namespace json

using TokenId = int32_t;

// The GPT-2 pre-tokenizer split: pieces of `text` (views into it) whose
// concatenation is `text`.
std::vector<std::string_view> SplitGpt2(std::string_view text);

// GPT-2's reversible byte -> printable code point map used by byte-level BPE
// (bytes '!'..'~', 0xA1..0xAC, 0xAE..0xFF map to themselves, the other 68 to
// U+0100..U+0143 in order). Returns the UTF-8 of the mapped code point.
const std::string& ByteToUnicode(uint8_t byte);
// Maps a byte-level token string back to raw bytes. Code points outside the
// map are kept as their UTF-8 (like the `tokenizers` ByteLevel decoder).
std::string ByteLevelDecode(std::string_view token);
// Maps raw bytes to their byte-level token string.
std::string ByteLevelEncode(std::string_view bytes);

struct AddedToken {
  TokenId id = -1;
  std::string content;
  bool special = false;
};

class Tokenizer {
 public:
  // Parses a Hugging Face tokenizer.json. INVALID_ARGUMENT for malformed
  // files, UNIMPLEMENTED for components outside the supported subset (the
  // message names the component).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view json_text);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);

  // Token ids of `text`. With `allow_special` false, special added tokens in
  // the text are treated as plain text (non-special added tokens still match).
  std::vector<TokenId> Encode(std::string_view text, bool allow_special = true) const;

  // Like Encode, but a special token is recognised only where it starts
  // inside one of `special_ranges` (sorted, disjoint byte ranges [first,
  // second) of `text`); elsewhere its text is ordinary. Used for chat
  // prompts, whose template parts may hold special tokens while the message
  // contents may not. Equals Encode(text) when the special tokens of `text`
  // all start inside the ranges.
  //
  // `cancel` (optional) is read between pre-tokenized words: once it is true,
  // encoding stops early and the result is incomplete (the caller checks it).
  std::vector<TokenId> EncodeWithSpecialRanges(
      std::string_view text, absl::Span<const std::pair<size_t, size_t>> special_ranges,
      const std::atomic<bool>* cancel = nullptr) const;
  // The longest token's byte length: a text of n bytes has at least
  // n / max_token_bytes() tokens.
  size_t max_token_bytes() const { return max_token_bytes_; }

  // Text of `ids`: concatenated token bytes, invalid UTF-8 replaced by U+FFFD
  // (as the `tokenizers` ByteLevel decoder does). Unknown ids decode to
  // nothing. `skip_special` drops special tokens.
  std::string Decode(absl::Span<const TokenId> ids, bool skip_special = false) const;

  // Raw bytes of token `id` (an added token's content); empty when unknown.
  std::string_view TokenBytes(TokenId id) const;
  // Id of a vocab entry (byte-level form, e.g. "Ġthe") or of an added
  // token's content.
  std::optional<TokenId> TokenToId(std::string_view token) const;
  bool IsSpecial(TokenId id) const;
  bool IsValidId(TokenId id) const {
    return id >= 0 && static_cast<size_t>(id) < id_to_bytes_.size() && has_id_[id];
  }
  const std::vector<AddedToken>& added_tokens() const { return added_; }
  // One past the largest id (ids in [0, vocab_size()) may have gaps).
  int vocab_size() const { return static_cast<int>(id_to_bytes_.size()); }

 private:
  Tokenizer() = default;
  void EncodeOrdinary(std::string_view text, std::vector<TokenId>* out,
                      const std::atomic<bool>* cancel) const;
  void EncodeWord(std::string_view word, std::vector<TokenId>* out) const;

  // FromJson's parts: each checks and reads one section of tokenizer.json.
  absl::Status LoadPreTokenizer(const json::Value& root);
  absl::Status LoadModelOptions(const json::Value& model);
  absl::Status LoadVocab(const json::Value& model);  // before LoadMerges
  absl::Status LoadMerges(const json::Value& model);
  absl::Status LoadAddedTokens(const json::Value& root);
  // Derived tables, once every token is loaded.
  void IndexTokens();
  void EnsureId(TokenId id);

  static uint64_t PairKey(TokenId a, TokenId b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  absl::flat_hash_map<std::string, TokenId> vocab_;  // byte-level string -> id
  std::vector<std::string> id_to_bytes_;             // raw bytes per id
  std::vector<bool> has_id_;
  std::vector<bool> is_special_;
  TokenId byte_ids_[256] = {};  // id of each single byte
  struct Merge {
    int rank;
    TokenId merged;
  };
  absl::flat_hash_map<uint64_t, Merge> merges_;  // PairKey(left, right)
  std::vector<AddedToken> added_;
  // First byte -> indices into added_, longest content first.
  std::vector<std::vector<int>> added_by_first_byte_ = std::vector<std::vector<int>>(256);
  bool add_prefix_space_ = false;
  size_t max_token_bytes_ = 1;
  bool ignore_merges_ = false;
};

// Incremental detokenizer for streaming: Push returns only complete UTF-8
// characters and holds back a trailing incomplete sequence until the bytes
// that complete it arrive. Concatenating every Push plus Flush equals
// Decode() of all ids.
class StreamingDecoder {
 public:
  // `tokenizer` must outlive the decoder.
  explicit StreamingDecoder(const Tokenizer* tokenizer, bool skip_special = false)
      : tokenizer_(tokenizer), skip_special_(skip_special) {}

  std::string Push(TokenId id);
  // Emits held-back bytes (an incomplete sequence becomes U+FFFD) and resets.
  std::string Flush();
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace hc

#endif  // HC_COMMON_TEXT_TOKENIZER_H_
