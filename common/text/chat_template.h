// Built-in chat templates (no Jinja engine): Granite-4 style and ChatML.
//
// Every message renders independently of the others, so rendering messages
// one at a time and concatenating equals rendering them all at once. The
// router relies on this: for a continuing conversation it renders and
// tokenizes only the new suffix of messages.
//
//   granite: <|start_of_role|>{role}<|end_of_role|>{content}<|end_of_text|>\n
//            generation prompt: <|start_of_role|>assistant<|end_of_role|>
//   chatml:  <|im_start|>{role}\n{content}<|im_end|>\n
//            generation prompt: <|im_start|>assistant\n
//
// (Unlike IBM's full Granite template, no default system message or tool
// block is inserted: that would make a conversation's rendering depend on its
// first message.) A generated assistant turn ends with the end-of-turn token
// the model sampled; `after_end_of_turn()` is what the template writes after
// it ("\n"), which the router must add before the next suffix.
//
// Thread-safety: immutable; safe to share.
#ifndef HC_COMMON_TEXT_CHAT_TEMPLATE_H_
#define HC_COMMON_TEXT_CHAT_TEMPLATE_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/text/tokenizer.h"

namespace hc {

struct ChatMessage {
  std::string role;  // system | user | assistant | tool
  std::string content;
};

class ChatTemplate {
 public:
  enum class Kind { kGranite, kChatMl };

  explicit ChatTemplate(Kind kind) : kind_(kind) {}

  // "granite" or "chatml"; INVALID_ARGUMENT naming the value otherwise.
  static absl::StatusOr<ChatTemplate> ByName(std::string_view name);
  // Detects the template family from a tokenizer_config.json text: its
  // `chat_template` (a string or a list of {name, template}) and its special
  // tokens. UNIMPLEMENTED when neither family's markers appear.
  static absl::StatusOr<ChatTemplate> FromTokenizerConfig(std::string_view json_text);
  // Same, reading `<model_dir>/tokenizer_config.json`.
  static absl::StatusOr<ChatTemplate> FromModelDir(const std::string& model_dir);

  Kind kind() const { return kind_; }
  std::string_view name() const { return kind_ == Kind::kGranite ? "granite" : "chatml"; }

  // One message, exactly as it appears inside a full rendering.
  std::string RenderMessage(const ChatMessage& message) const;
  // All messages, then the generation prompt when `add_generation_prompt`.
  // Render(all) == concat(Render(prefix), Render(suffix)) for any split when
  // the prefix is rendered without the generation prompt.
  std::string Render(absl::Span<const ChatMessage> messages, bool add_generation_prompt) const;
  // Render(), also returning the byte ranges written by the template itself
  // (role markers, separators, generation prompt) as opposed to message roles
  // and contents, sorted and disjoint.
  std::string RenderWithTemplateRanges(absl::Span<const ChatMessage> messages,
                                       bool add_generation_prompt,
                                       std::vector<std::pair<size_t, size_t>>* ranges) const;
  // The text that opens an assistant turn.
  std::string_view generation_prompt() const;
  // The token text that ends every message (also the model's stop token).
  std::string_view end_of_turn() const;
  // What the template writes after end_of_turn() ("\n").
  std::string_view after_end_of_turn() const { return "\n"; }

  // The Jinja source equivalent to this template, for tokenizer_config.json
  // (Hugging Face's apply_chat_template renders the same text).
  std::string JinjaSource() const;

 private:
  Kind kind_;
};

// Token ids of `messages` rendered with `tmpl`: special tokens are recognised
// only in the template's own text, so a message that contains e.g.
// "<|end_of_text|>" cannot inject a control token (its text is encoded as
// ordinary bytes). For contents without special-token text the result equals
// tokenizer.Encode(tmpl.Render(...)), i.e. what Hugging Face's
// apply_chat_template produces. Encoding a conversation's messages in several
// consecutive calls (generation prompt only on the last) and concatenating
// gives the same ids as one call, because every message starts and ends with
// a special token.
// `cancel` as in Tokenizer::EncodeWithSpecialRanges.
std::vector<TokenId> EncodeChat(const Tokenizer& tokenizer, const ChatTemplate& tmpl,
                                absl::Span<const ChatMessage> messages, bool add_generation_prompt,
                                const std::atomic<bool>* cancel = nullptr);

}  // namespace hc

#endif  // HC_COMMON_TEXT_CHAT_TEMPLATE_H_
