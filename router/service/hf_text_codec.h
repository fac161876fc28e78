// TextCodec over a Hugging Face tokenizer.json (byte-level BPE) and the
// checkpoint's own chat template (common/text/chat_template.h).
//
// A chat template renders a conversation as a whole (default system prompts,
// tool blocks, loop.last logic), so a turn is encoded from the rendering of
// the whole conversation: committed history plus new messages, with the
// generation prompt. Its suffix is what that rendering adds after the
// committed text, which is what the previous turn's prompt rendered plus the
// model's reply (plus the end-of-turn token when the model sampled it; a
// reply cut short, by max_tokens say, is closed by the template's own text).
//
// Templates that render the history differently once messages are added (not
// prefix-stable: Nemotron-Nano-v2 writes "<think>\n\n" in the generation
// prompt but not in earlier replies, Qwen3 strips earlier replies' reasoning)
// make the rendering diverge from the committed text. Such a turn is a
// rewrite (EncodedTurn::rewrite): the whole rendering is encoded, and the
// router computes the turn on exactly that, keeping only the committed
// tokens it shares (router/service/rewrite.h).
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
  // Reads <dir>/tokenizer.json, <dir>/tokenizer_config.json and, when
  // present, <dir>/chat_template.jinja. Errors name the file and what is
  // wrong with it (a template construct the engine lacks: UNIMPLEMENTED with
  // its line).
  static absl::StatusOr<std::unique_ptr<HfTextCodec>> FromModelDir(const std::string& dir);

  std::string Decode(std::span<const uint32_t> ids) const override;
  std::string TokenBytes(std::span<const uint32_t> ids) const override;
  std::vector<uint32_t> EncodeBytes(std::string_view bytes) const override;
  std::unique_ptr<StreamDecoder> NewStreamDecoder() const override;
  uint32_t vocab_size() const override;
  uint32_t eos_token_id() const override { return static_cast<uint32_t>(end_of_turn_); }
  size_t max_token_bytes() const override { return tokenizer_->max_token_bytes(); }
  // Decided once at load by a probe conversation (ProbeRewritesHistory).
  bool RewritesHistory() const override { return rewrites_history_; }

 private:
  absl::StatusOr<EncodedTurn> DoEncodeTurn(std::span<const TurnMessage> messages,
                                           const TurnContext& context,
                                           const std::atomic<bool>* cancel) const override;
  HfTextCodec(std::unique_ptr<Tokenizer> tokenizer, ChatTemplate tmpl, TokenId end_of_turn)
      : tokenizer_(std::move(tokenizer)), template_(std::move(tmpl)), end_of_turn_(end_of_turn) {
    rewrites_history_ = ProbeRewritesHistory();
  }
  // Renders a short conversation whose reply carries reasoning
  // ("<think>...</think>", what Qwen3 strips) and continues it by one user
  // message: a rewrite when that rendering does not extend the first turn's
  // prompt plus the reply and the end of turn (the check DoEncodeTurn makes).
  // A template that refuses the probe counts as rewriting: asking for a
  // snapshot costs a Mamba slot, missing one costs a full recompute.
  bool ProbeRewritesHistory() const;

  std::unique_ptr<Tokenizer> tokenizer_;
  ChatTemplate template_;
  TokenId end_of_turn_;
  bool rewrites_history_ = false;
};

}  // namespace hc::router

#endif  // HC_ROUTER_SERVICE_HF_TEXT_CODEC_H_
