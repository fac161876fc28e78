// Chat templates: a model's own Hugging Face Jinja chat template (the
// `chat_template` of tokenizer_config.json, or chat_template.jinja in the
// model directory), or a built-in one by name, all rendered by one engine
// (common/text/jinja) exactly as transformers' apply_chat_template renders
// them: messages, tools=None, documents=None, add_generation_prompt and the
// tokenizer's special tokens (bos_token, eos_token, ...) as variables.
//
// Built-ins (Jinja sources, tests/data/chat_templates/builtin-*.jinja):
//   granite: <|start_of_role|>{role}<|end_of_role|>{content}<|end_of_text|>\n
//            generation prompt: <|start_of_role|>assistant<|end_of_role|>
//   chatml:  <|im_start|>{role}\n{content}<|im_end|>\n
//            generation prompt: <|im_start|>assistant\n
// Shipped real templates (common/text/templates/*.jinja, compiled in):
//   granite-4.0-h: IBM Granite-4.0-H's own template (default system prompt,
//            tool and document blocks); the synthetic granite-* checkpoints
//            ship it in their tokenizer_config.json.
//   nemotron-nano-v2: NVIDIA-Nemotron-Nano-9B-v2's own template (not
//            prefix-stable: its continuing turns are rewrite turns); the
//            synthetic nemotron-nano-* checkpoints ship it.
//   qwen3:   Qwen3's own template (reasoning of earlier replies stripped:
//            after a reply that reasoned, the next turn is a rewrite turn);
//            the synthetic *-qwen3-* checkpoints ship it.
//
// Real templates are not per-message independent (default system prompts,
// tool blocks, loop.last logic, reasoning stripping), so a conversation is
// always rendered whole; see router/service/hf_text_codec.h for how a
// continuing conversation's new tokens are derived from that.
//
// Thread-safety: immutable; safe to share and to render concurrently.
#ifndef HC_COMMON_TEXT_CHAT_TEMPLATE_H_
#define HC_COMMON_TEXT_CHAT_TEMPLATE_H_

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/text/jinja/template.h"
#include "common/text/tokenizer.h"

namespace hc {

struct ChatMessage {
  std::string role;  // system | user | assistant | tool
  std::string content;
};

// A rendering and the byte ranges of it the template wrote itself (as
// opposed to message roles and contents), sorted and disjoint.
struct RenderedChat {
  std::string text;
  std::vector<std::pair<size_t, size_t>> template_ranges;
};

class ChatTemplate {
 public:
  // "granite", "granite-4.0-h", "nemotron-nano-v2", "qwen3" or "chatml"; INVALID_ARGUMENT
  // naming the value otherwise.
  static absl::StatusOr<ChatTemplate> ByName(std::string_view name);
  // The template of a tokenizer_config.json text: `chat_template` as a string,
  // or the entry named "default" of a list of {name, template}. Its special
  // tokens (bos_token, eos_token, unk_token, sep_token, pad_token, cls_token,
  // mask_token: strings or {"content": ...}; additional_special_tokens) are
  // passed to the template; eos_token is the end of an assistant turn.
  // `source_override` (chat_template.jinja) replaces `chat_template`.
  // Errors: INVALID_ARGUMENT (bad JSON, no template, no eos_token, template
  // syntax), UNIMPLEMENTED (a construct the engine does not support), each
  // naming the file and, for the template, the line.
  static absl::StatusOr<ChatTemplate> FromTokenizerConfig(
      std::string_view json_text, const std::string* source_override = nullptr);
  // <model_dir>/chat_template.jinja when present, else the chat_template of
  // <model_dir>/tokenizer_config.json (which gives the special tokens).
  static absl::StatusOr<ChatTemplate> FromModelDir(const std::string& model_dir);

  // "granite", "granite-4.0-h", "nemotron-nano-v2", "qwen3", "chatml" (a built-in, or a model
  // template identical to one), or "model".
  const std::string& name() const { return name_; }
  const std::string& source() const { return tmpl_->source(); }
  // The token text that ends an assistant turn (the model's stop token).
  const std::string& end_of_turn() const { return end_of_turn_; }

  // All messages, then the generation prompt when `add_generation_prompt`.
  // INVALID_ARGUMENT with the template's message when it refuses the
  // conversation (raise_exception, e.g. roles that do not alternate) or fails
  // on it.
  absl::StatusOr<RenderedChat> Render(absl::Span<const ChatMessage> messages,
                                      bool add_generation_prompt) const;
  absl::StatusOr<std::string> RenderText(absl::Span<const ChatMessage> messages,
                                         bool add_generation_prompt) const;

 private:
  ChatTemplate(std::shared_ptr<const jinja::Template> tmpl, std::string name,
               jinja::Context specials, std::string end_of_turn)
      : tmpl_(std::move(tmpl)),
        name_(std::move(name)),
        specials_(std::move(specials)),
        end_of_turn_(std::move(end_of_turn)) {}

  std::shared_ptr<const jinja::Template> tmpl_;
  std::string name_;
  jinja::Context specials_;
  std::string end_of_turn_;
};

// Token ids of a rendering: special tokens are recognised only in the
// template's own text, so a message that contains e.g. "<|end_of_text|>"
// cannot inject a control token (its text is encoded as ordinary bytes). For
// contents without special-token text the result equals
// tokenizer.Encode(rendered.text), i.e. what Hugging Face's
// apply_chat_template produces. `cancel` as in
// Tokenizer::EncodeWithSpecialRanges.
std::vector<TokenId> EncodeRendered(const Tokenizer& tokenizer, const RenderedChat& rendered,
                                    const std::atomic<bool>* cancel = nullptr);
// Render + EncodeRendered.
absl::StatusOr<std::vector<TokenId>> EncodeChat(const Tokenizer& tokenizer,
                                                const ChatTemplate& tmpl,
                                                absl::Span<const ChatMessage> messages,
                                                bool add_generation_prompt,
                                                const std::atomic<bool>* cancel = nullptr);

}  // namespace hc

#endif  // HC_COMMON_TEXT_CHAT_TEMPLATE_H_
