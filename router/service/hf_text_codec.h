// TextCodec over a Hugging Face tokenizer.json (byte-level BPE) and the chat
// template named by the checkpoint's tokenizer_config.json.
//
// Continuing a conversation renders exactly what the template would have
// produced for the whole history: after a reply that ended with the template's
// end-of-turn token the suffix starts with what the template writes after it
// ("\n"); a reply cut short (max_tokens) is first closed with end-of-turn.
#ifndef HC_ROUTER_SERVICE_HF_TEXT_CODEC_H_
#define HC_ROUTER_SERVICE_HF_TEXT_CODEC_H_

#include <memory>
#include <string>

#include "common/text/chat_template.h"
#include "common/text/tokenizer.h"
#include "router/service/text_codec.h"

namespace hc::router {

class HfTextCodec final : public TextCodec {
 public:
  // Reads <dir>/tokenizer.json and <dir>/tokenizer_config.json. Errors name
  // the file and what is wrong with it.
  static absl::StatusOr<std::unique_ptr<HfTextCodec>> FromModelDir(const std::string& dir);

  std::string Decode(std::span<const uint32_t> ids) const override;
  std::string TokenBytes(std::span<const uint32_t> ids) const override;
  std::vector<uint32_t> EncodeBytes(std::string_view bytes) const override;
  std::unique_ptr<StreamDecoder> NewStreamDecoder() const override;
  uint32_t vocab_size() const override;
  uint32_t eos_token_id() const override { return static_cast<uint32_t>(end_of_turn_); }
  size_t max_token_bytes() const override { return tokenizer_->max_token_bytes(); }

 private:
  absl::StatusOr<EncodedTurn> DoEncodeTurn(std::span<const TurnMessage> messages,
                                           const TurnContext& context,
                                           const std::atomic<bool>* cancel) const override;
  HfTextCodec(std::unique_ptr<Tokenizer> tokenizer, ChatTemplate tmpl, TokenId end_of_turn)
      : tokenizer_(std::move(tokenizer)), template_(std::move(tmpl)), end_of_turn_(end_of_turn) {}

  std::unique_ptr<Tokenizer> tokenizer_;
  ChatTemplate template_;
  TokenId end_of_turn_;
};

}  // namespace hc::router

#endif  // HC_ROUTER_SERVICE_HF_TEXT_CODEC_H_
