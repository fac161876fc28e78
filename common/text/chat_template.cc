#include "common/text/chat_template.h"

#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/status_macros.h"

namespace hc {
namespace {

constexpr char kGraniteStart[] = "<|start_of_role|>";
constexpr char kGraniteEndRole[] = "<|end_of_role|>";
constexpr char kGraniteEnd[] = "<|end_of_text|>";
constexpr char kImStart[] = "<|im_start|>";
constexpr char kImEnd[] = "<|im_end|>";

// Collects the chat template text(s) and special-token strings of a
// tokenizer_config.json into one haystack for marker detection.
void CollectStrings(const json::Value& v, std::string* out) {
  if (v.is_string()) {
    absl::StrAppend(out, v.AsString(), "\n");
  } else if (v.is_array()) {
    for (const json::Value& item : v.AsArray()) CollectStrings(item, out);
  } else if (v.is_object()) {
    for (const auto& [key, item] : v.AsObject()) CollectStrings(item, out);
  }
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::ByName(std::string_view name) {
  if (name == "granite" || name == "granite4") return ChatTemplate(Kind::kGranite);
  if (name == "chatml") return ChatTemplate(Kind::kChatMl);
  return absl::InvalidArgumentError(absl::StrCat("unknown chat template \"", std::string(name),
                                                 "\" (expected granite or chatml)"));
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromTokenizerConfig(std::string_view json_text) {
  HC_ASSIGN_OR_RETURN(json::Value root, json::Parse(json_text));
  if (!root.is_object()) {
    return absl::InvalidArgumentError("tokenizer_config.json: not a JSON object");
  }
  // The template text decides; special tokens are the fallback.
  std::string tmpl;
  if (const json::Value* t = root.Find("chat_template")) CollectStrings(*t, &tmpl);
  auto detect = [](const std::string& s) -> std::optional<Kind> {
    if (s.find(kGraniteStart) != std::string::npos) return Kind::kGranite;
    if (s.find(kImStart) != std::string::npos) return Kind::kChatMl;
    return std::nullopt;
  };
  if (auto k = detect(tmpl)) return ChatTemplate(*k);
  std::string specials;
  for (const char* key : {"added_tokens_decoder", "additional_special_tokens", "bos_token",
                          "eos_token", "pad_token"}) {
    if (const json::Value* v = root.Find(key)) CollectStrings(*v, &specials);
  }
  if (auto k = detect(specials)) return ChatTemplate(*k);
  return absl::UnimplementedError(
      "tokenizer_config.json: chat template is neither Granite (<|start_of_role|>) nor ChatML "
      "(<|im_start|>); choose one by name");
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromModelDir(const std::string& model_dir) {
  HC_ASSIGN_OR_RETURN(const std::string text,
                      ReadFileToString(model_dir + "/tokenizer_config.json"));
  return FromTokenizerConfig(text);
}

std::string ChatTemplate::RenderMessage(const ChatMessage& m) const {
  if (kind_ == Kind::kGranite) {
    return absl::StrCat(kGraniteStart, m.role, kGraniteEndRole, m.content, kGraniteEnd, "\n");
  }
  return absl::StrCat(kImStart, m.role, "\n", m.content, kImEnd, "\n");
}

std::string ChatTemplate::Render(absl::Span<const ChatMessage> messages,
                                 bool add_generation_prompt) const {
  std::string out;
  for (const ChatMessage& m : messages) out.append(RenderMessage(m));
  if (add_generation_prompt) out.append(generation_prompt());
  return out;
}

std::string ChatTemplate::RenderWithTemplateRanges(
    absl::Span<const ChatMessage> messages, bool add_generation_prompt,
    std::vector<std::pair<size_t, size_t>>* ranges) const {
  ranges->clear();
  std::string out;
  auto emit = [&](std::string_view text, bool from_template) {
    if (text.empty()) return;
    if (from_template) {
      if (!ranges->empty() && ranges->back().second == out.size()) {
        ranges->back().second += text.size();
      } else {
        ranges->emplace_back(out.size(), out.size() + text.size());
      }
    }
    out.append(text);
  };
  for (const ChatMessage& m : messages) {
    if (kind_ == Kind::kGranite) {
      emit(kGraniteStart, true);
      emit(m.role, false);
      emit(kGraniteEndRole, true);
      emit(m.content, false);
      emit(kGraniteEnd, true);
      emit("\n", true);
    } else {
      emit(kImStart, true);
      emit(m.role, false);
      emit("\n", true);
      emit(m.content, false);
      emit(kImEnd, true);
      emit("\n", true);
    }
  }
  if (add_generation_prompt) emit(generation_prompt(), true);
  return out;
}

std::vector<TokenId> EncodeChat(const Tokenizer& tokenizer, const ChatTemplate& tmpl,
                                absl::Span<const ChatMessage> messages, bool add_generation_prompt,
                                const std::atomic<bool>* cancel) {
  std::vector<std::pair<size_t, size_t>> ranges;
  const std::string text = tmpl.RenderWithTemplateRanges(messages, add_generation_prompt, &ranges);
  return tokenizer.EncodeWithSpecialRanges(text, ranges, cancel);
}

std::string_view ChatTemplate::generation_prompt() const {
  return kind_ == Kind::kGranite ? "<|start_of_role|>assistant<|end_of_role|>"
                                 : "<|im_start|>assistant\n";
}

std::string_view ChatTemplate::end_of_turn() const {
  return kind_ == Kind::kGranite ? kGraniteEnd : kImEnd;
}

std::string ChatTemplate::JinjaSource() const {
  if (kind_ == Kind::kGranite) {
    return "{%- for message in messages %}"
           "{{- '<|start_of_role|>' + message['role'] + '<|end_of_role|>' + message['content'] + "
           "'<|end_of_text|>\\n' }}"
           "{%- endfor %}"
           "{%- if add_generation_prompt %}{{- '<|start_of_role|>assistant<|end_of_role|>' }}"
           "{%- endif %}";
  }
  return "{%- for message in messages %}"
         "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
         "{%- endfor %}"
         "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
}

}  // namespace hc
