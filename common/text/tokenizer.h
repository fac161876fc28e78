// Byte-level BPE tokenizer that reads Hugging Face `tokenizer.json` files and
// encodes/decodes exactly like the `tokenizers` library (0.23) for the
// supported pipelines: the GPT-2 one and the Split-regex + ByteLevel ones of
// Granite-4.0 (cl100k-style) and Nemotron-H (tekken-style). Encoding runs
//
//   1. added tokens that are not `normalized`, found in the raw text
//      (added_vocabulary.h: leftmost-longest, lstrip/rstrip/single_word,
//      special tokens only where allowed);
//   2. on the text between them: bytes that are not valid UTF-8 are cut out
//      as words of their own (`tokenizers` only ever sees valid UTF-8), the
//      rest is normalized (normalizer.h), then split again on the
//      `normalized` added tokens;
//   3. the pre-tokenizer (pre_tokenizer.h: Split/Digits/ByteLevel, regexes
//      run by Oniguruma like `tokenizers` does);
//   4. BPE on each word's raw bytes (bpe_encoder.h);
//   5. optionally the post-processor (post_processor.h), PostProcess().
//
// Decoding concatenates each token's bytes as the ByteLevel decoder computes
// them and replaces invalid UTF-8 with U+FFFD (like Rust's from_utf8_lossy).
// Anything else in a tokenizer.json is refused at load time with
// UNIMPLEMENTED naming the component or option.
//
// Thread-safety: a Tokenizer is immutable after loading; all const methods
// may be called concurrently. A StreamingDecoder is single-threaded.
#ifndef HC_COMMON_TEXT_TOKENIZER_H_
#define HC_COMMON_TEXT_TOKENIZER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/text/added_vocabulary.h"
#include "common/text/bpe_encoder.h"
#include "common/text/byte_level.h"
#include "common/text/normalizer.h"
#include "common/text/post_processor.h"
#include "common/text/pre_tokenizer.h"

namespace hc {

namespace json {
class Value;
}  // namespace json

class Tokenizer {
 public:
  // Parses a Hugging Face tokenizer.json. INVALID_ARGUMENT for malformed
  // files, UNIMPLEMENTED for components outside the supported subset (the
  // message names the component).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view json_text);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);

  // Token ids of `text`, without the post-processor's tokens (`tokenizers`:
  // encode(text, add_special_tokens=False)). With `allow_special` false,
  // special added tokens in the text are ordinary text (`tokenizers`:
  // encode_special_tokens=True).
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

  // `ids` with the post-processor's tokens around them: Encode(text) then
  // PostProcess is `tokenizers`' encode(text, add_special_tokens=True).
  std::vector<TokenId> PostProcess(absl::Span<const TokenId> ids) const {
    return post_processor_.Apply(ids);
  }
  const PostProcessor& post_processor() const { return post_processor_; }

  // The longest token's byte length: a text of n bytes has at least
  // n / max_token_bytes() tokens.
  size_t max_token_bytes() const { return max_token_bytes_; }

  // Text of `ids`: concatenated token bytes, invalid UTF-8 replaced by U+FFFD
  // (as the `tokenizers` ByteLevel decoder does). Unknown ids decode to
  // nothing. `skip_special` drops special tokens.
  std::string Decode(absl::Span<const TokenId> ids, bool skip_special = false) const;

  // Raw bytes of token `id`; empty when unknown.
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
  // Steps 2-4 on text between raw-matched added tokens.
  void EncodeOrdinary(std::string_view text, const std::function<bool(size_t)>& special_allowed,
                      size_t offset, std::vector<TokenId>* out,
                      const std::atomic<bool>* cancel) const;
  // Steps 3-4 on valid UTF-8 text.
  void EncodeNormalized(std::string_view text, std::vector<TokenId>* out,
                        const std::atomic<bool>* cancel) const;

  // FromJson's parts (tokenizer_load.cc).
  absl::Status LoadComponents(const json::Value& root);
  absl::Status LoadAddedTokens(const json::Value& root);
  void IndexTokens();
  void EnsureId(TokenId id);

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  BpeEncoder model_;
  PostProcessor post_processor_;
  std::vector<AddedToken> added_;
  std::unique_ptr<AddedTokenMatcher> raw_matcher_;         // not `normalized`
  std::unique_ptr<AddedTokenMatcher> normalized_matcher_;  // `normalized`

  std::vector<std::string> id_to_bytes_;  // raw bytes per id
  std::vector<bool> has_id_;
  std::vector<bool> is_special_;
  absl::flat_hash_map<std::string, TokenId> added_by_content_;
  size_t max_token_bytes_ = 1;
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
