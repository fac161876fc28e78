// What the router needs from a tokenizer and chat template, behind a small
// interface so the real Hugging Face tokenizer (common/text/tokenizer.h,
// common/text/chat_template.h) plugs in through MakeTextCodec.
//
// ByteTextCodec is a complete, dependency-free codec for tests and for
// synthetic models: token id = byte value (0..255), plus three special tokens
//   256 <|eos|>    end of sequence (the EOS id)
//   257 <|start|>  opens a message: <|start|> role '\n' content <|end|>
//   258 <|end|>    closes a message
// and the generation prompt <|start|> "assistant\n".
//
// Thread-safety: a TextCodec is immutable and safe to share; a StreamDecoder
// belongs to one stream.
#ifndef HC_ROUTER_SERVICE_TEXT_CODEC_H_
#define HC_ROUTER_SERVICE_TEXT_CODEC_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "router/ledger/ledger.h"

namespace hc::router {

struct TurnMessage {
  Role role = Role::kUser;
  std::string content;  // valid UTF-8
};

// Where the new turn attaches to the conversation.
struct TurnContext {
  bool first_turn = true;              // no committed tokens yet
  std::optional<uint32_t> last_token;  // the last committed token, if any
  // The committed messages, oldest first, as the ledger keeps them (role and
  // text; an assistant reply's text is its decoded tokens). A chat template
  // renders the whole conversation, so continuing one needs its history.
  std::vector<TurnMessage> history;
};

// The token ids of a turn's suffix: message i spans
// [message_begins[i], message_ends[i]); the tokens before message_begins[0]
// are what the template writes between the committed tokens and the first
// new message (e.g. the newline after an end-of-turn token, a default system
// prompt), and those after the last message (through tokens.size()) are the
// generation prompt.
//
// A rewrite (`rewrite` true: the chat template renders the committed history
// differently once the new messages are added, see HfTextCodec) holds the
// WHOLE rendering instead: `tokens` from token 0, and one range for every
// message of the conversation, the history's (TurnContext::history) first.
struct EncodedTurn {
  bool rewrite = false;
  std::vector<uint32_t> tokens;
  std::vector<uint32_t> message_begins;
  std::vector<uint32_t> message_ends;
};

// Incremental detokenizer: Push returns only complete UTF-8 characters; bytes
// of a character split across tokens are held until it completes. Invalid
// sequences come out as U+FFFD, so the output is always valid UTF-8.
class StreamDecoder {
 public:
  virtual ~StreamDecoder() = default;
  virtual std::string Push(std::span<const uint32_t> ids) = 0;
  // The same for raw token bytes (TextCodec::TokenBytes): Push(ids) equals
  // PushBytes(TokenBytes(ids)), however the bytes are split.
  virtual std::string PushBytes(std::string_view bytes) = 0;
  // Whatever is held back (an incomplete character becomes U+FFFD).
  virtual std::string Flush() = 0;
};

class TextCodec {
 public:
  virtual ~TextCodec() = default;
  // Renders `messages` with the chat template as the continuation of a
  // conversation, followed by the assistant generation prompt.
  // INVALID_ARGUMENT when the template refuses the conversation (its own
  // message). When the template renders the committed history differently
  // once `messages` are added, the result is a rewrite (see EncodedTurn).
  // CANCELLED once
  // `*cancel` turns true (checked between words, so a long text stops soon;
  // whoever sets it also notifies its waiters, std::atomic::notify_all).
  absl::StatusOr<EncodedTurn> EncodeTurn(std::span<const TurnMessage> messages,
                                         const TurnContext& context,
                                         const std::atomic<bool>* cancel = nullptr) const {
    return DoEncodeTurn(messages, context, cancel);
  }
  // A lower bound on the tokens of a text of `bytes` bytes (no token is longer
  // than this many bytes), so a request far past the context limit is refused
  // before any tokenizing.
  virtual size_t max_token_bytes() const = 0;
  // Text of generated tokens (special tokens omitted), valid UTF-8.
  virtual std::string Decode(std::span<const uint32_t> ids) const = 0;
  // The raw bytes generated tokens add to the text before UTF-8 decoding
  // (special tokens add none): what stop strings are matched on, by the
  // worker and the router alike.
  virtual std::string TokenBytes(std::span<const uint32_t> ids) const = 0;
  // Tokens whose TokenBytes are exactly `bytes` (any bytes, valid UTF-8 or
  // not; no special tokens): the re-tokenization of the part of a token
  // before a stop string that begins inside it.
  virtual std::vector<uint32_t> EncodeBytes(std::string_view bytes) const = 0;
  virtual std::unique_ptr<StreamDecoder> NewStreamDecoder() const = 0;
  virtual uint32_t vocab_size() const = 0;
  virtual uint32_t eos_token_id() const = 0;
  // Whether continuing turns are expected to be rewrites (the chat template is
  // not prefix-stable). The router then asks the worker for a Mamba state
  // snapshot at each prompt's last message boundary, where the next rewrite
  // turn's kept prefix ends, so that turn resumes there (docs/router.md).
  virtual bool RewritesHistory() const { return false; }

 protected:
  virtual absl::StatusOr<EncodedTurn> DoEncodeTurn(std::span<const TurnMessage> messages,
                                                   const TurnContext& context,
                                                   const std::atomic<bool>* cancel) const = 0;
};

// Turns a byte stream into complete UTF-8 characters (for any byte-level
// tokenizer's stream decoder).
class Utf8Assembler {
 public:
  // Appends `bytes` and returns the complete characters so far.
  std::string Push(std::string_view bytes);
  std::string Flush();

 private:
  std::string held_;
};

// Longest prefix of `s` that is valid UTF-8 (overlongs, surrogates and
// values past U+10FFFF are invalid).
bool IsValidUtf8(std::string_view s);

class ByteTextCodec final : public TextCodec {
 public:
  static constexpr uint32_t kEos = 256;
  static constexpr uint32_t kStart = 257;
  static constexpr uint32_t kEnd = 258;
  static constexpr uint32_t kVocabSize = 259;

  std::string Decode(std::span<const uint32_t> ids) const override;
  std::string TokenBytes(std::span<const uint32_t> ids) const override;
  std::vector<uint32_t> EncodeBytes(std::string_view bytes) const override;
  std::unique_ptr<StreamDecoder> NewStreamDecoder() const override;
  uint32_t vocab_size() const override { return kVocabSize; }
  uint32_t eos_token_id() const override { return kEos; }
  size_t max_token_bytes() const override { return 1; }

 private:
  absl::StatusOr<EncodedTurn> DoEncodeTurn(std::span<const TurnMessage> messages,
                                           const TurnContext& context,
                                           const std::atomic<bool>* cancel) const override;
};

// The codec for --model: "bytes" is ByteTextCodec; a checkpoint directory or
// synthetic:<preset> (its generated cache directory) is HfTextCodec.
absl::StatusOr<std::unique_ptr<TextCodec>> MakeTextCodec(const std::string& model);

}  // namespace hc::router

#endif  // HC_ROUTER_SERVICE_TEXT_CODEC_H_
