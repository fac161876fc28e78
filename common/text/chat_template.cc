#include "common/text/chat_template.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/status_macros.h"
#include "common/text/templates/shipped_templates.h"

namespace hc {
namespace {

// The built-in templates (tests/data/chat_templates/builtin-*.jinja hold the
// same text; the differential test renders them against jinja2).
constexpr char kGraniteSource[] =
    "{%- for message in messages %}"
    "{{- '<|start_of_role|>' + message['role'] + '<|end_of_role|>' + message['content'] + "
    "'<|end_of_text|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_of_role|>assistant<|end_of_role|>' }}"
    "{%- endif %}";
constexpr char kChatMlSource[] =
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

absl::StatusOr<std::shared_ptr<const jinja::Template>> ParseTemplate(std::string_view source,
                                                                     std::string_view origin) {
  absl::StatusOr<std::unique_ptr<jinja::Template>> t = jinja::Template::Parse(source);
  if (!t.ok()) {
    return absl::Status(t.status().code(),
                        absl::StrCat(std::string(origin), ": ", t.status().message()));
  }
  return std::shared_ptr<const jinja::Template>(*std::move(t));
}

std::string BuiltinName(std::string_view source) {
  if (source == kGraniteSource) return "granite";
  if (source == kChatMlSource) return "chatml";
  if (source == internal::kGranite4HTemplate) return "granite-4.0-h";
  if (source == internal::kNemotronNanoV2Template) return "nemotron-nano-v2";
  if (source == internal::kQwen3Template) return "qwen3";
  return "model";
}

// A special token of tokenizer_config.json: a string, or an AddedToken
// object {"content": ...}; nullptr otherwise.
const std::string* TokenText(const json::Value* v) {
  if (v == nullptr) return nullptr;
  if (v->is_string()) return &v->AsString();
  if (v->is_object()) {
    const json::Value* c = v->Find("content");
    if (c != nullptr && c->is_string()) return &c->AsString();
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::ByName(std::string_view name) {
  std::string_view source;
  std::string end;
  if (name == "granite" || name == "granite4") {
    source = kGraniteSource;
    end = "<|end_of_text|>";
  } else if (name == "granite-4.0-h") {
    source = internal::kGranite4HTemplate;
    end = "<|end_of_text|>";
  } else if (name == "nemotron-nano-v2") {
    source = internal::kNemotronNanoV2Template;
    end = "<SPECIAL_12>";
  } else if (name == "qwen3") {
    source = internal::kQwen3Template;
    end = "<|im_end|>";
  } else if (name == "chatml") {
    source = kChatMlSource;
    end = "<|im_end|>";
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown chat template \"", std::string(name),
                     "\" (expected granite, granite-4.0-h, nemotron-nano-v2, qwen3 or chatml)"));
  }
  HC_ASSIGN_OR_RETURN(auto tmpl, ParseTemplate(source, "built-in chat template"));
  return ChatTemplate(std::move(tmpl), BuiltinName(source), {}, std::move(end));
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromTokenizerConfig(std::string_view json_text,
                                                               const std::string* source_override) {
  HC_ASSIGN_OR_RETURN(json::Value root, json::Parse(json_text));
  if (!root.is_object()) {
    return absl::InvalidArgumentError("tokenizer_config.json: not a JSON object");
  }
  std::string source;
  std::string origin = "chat_template.jinja";
  if (source_override != nullptr) {
    source = *source_override;
  } else {
    origin = "tokenizer_config.json chat_template";
    const json::Value* t = root.Find("chat_template");
    if (t != nullptr && t->is_string()) {
      source = t->AsString();
    } else if (t != nullptr && t->is_array()) {
      bool found = false;
      for (const json::Value& entry : t->AsArray()) {
        const json::Value* name = entry.is_object() ? entry.Find("name") : nullptr;
        const json::Value* text = entry.is_object() ? entry.Find("template") : nullptr;
        if (name != nullptr && name->is_string() && name->AsString() == "default" &&
            text != nullptr && text->is_string()) {
          source = text->AsString();
          found = true;
        }
      }
      if (!found) {
        return absl::InvalidArgumentError(
            "tokenizer_config.json: chat_template is a list without a {\"name\": \"default\"} "
            "entry");
      }
    } else {
      return absl::InvalidArgumentError(
          "tokenizer_config.json: no chat_template (a string or a list of {name, template}) and "
          "no chat_template.jinja");
    }
  }
  // The variables transformers adds: its tokenizer's special_tokens_map.
  jinja::Context specials;
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                          "cls_token", "mask_token"}) {
    if (const std::string* text = TokenText(root.Find(key))) {
      specials.emplace_back(key, jinja::Value::String(*text));
    }
  }
  if (const json::Value* extra = root.Find("additional_special_tokens");
      extra != nullptr && extra->is_array()) {
    jinja::ValueList items;
    for (const json::Value& item : extra->AsArray()) {
      if (const std::string* text = TokenText(&item)) items.push_back(jinja::Value::String(*text));
    }
    specials.emplace_back("additional_special_tokens", jinja::Value::MakeList(std::move(items)));
  }
  const std::string* eos = TokenText(root.Find("eos_token"));
  if (eos == nullptr || eos->empty()) {
    return absl::InvalidArgumentError(
        "tokenizer_config.json: no eos_token, so the end of an assistant turn is unknown");
  }
  HC_ASSIGN_OR_RETURN(auto tmpl, ParseTemplate(source, origin));
  return ChatTemplate(std::move(tmpl), BuiltinName(source), std::move(specials), *eos);
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromModelDir(const std::string& model_dir) {
  HC_ASSIGN_OR_RETURN(const std::string text,
                      ReadFileToString(model_dir + "/tokenizer_config.json"));
  const std::string jinja_path = model_dir + "/chat_template.jinja";
  if (std::filesystem::exists(jinja_path)) {
    HC_ASSIGN_OR_RETURN(const std::string source, ReadFileToString(jinja_path));
    absl::StatusOr<ChatTemplate> t = FromTokenizerConfig(text, &source);
    if (!t.ok()) {
      return absl::Status(t.status().code(), absl::StrCat(model_dir, "/", t.status().message()));
    }
    return t;
  }
  absl::StatusOr<ChatTemplate> t = FromTokenizerConfig(text);
  if (!t.ok()) {
    return absl::Status(t.status().code(), absl::StrCat(model_dir, "/", t.status().message()));
  }
  return t;
}

absl::StatusOr<RenderedChat> ChatTemplate::Render(absl::Span<const ChatMessage> messages,
                                                  bool add_generation_prompt) const {
  jinja::ValueList items;
  items.reserve(messages.size());
  for (const ChatMessage& m : messages) {
    jinja::Text role{m.role, ""};
    role.MarkAllData();
    jinja::Text content{m.content, ""};
    content.MarkAllData();
    items.push_back(jinja::Value::MakeDict(
        {{jinja::Value::String("role"), jinja::Value::FromText(std::move(role))},
         {jinja::Value::String("content"), jinja::Value::FromText(std::move(content))}}));
  }
  jinja::Context ctx = specials_;
  ctx.emplace_back("messages", jinja::Value::MakeList(std::move(items)));
  ctx.emplace_back("tools", jinja::Value::None());
  ctx.emplace_back("documents", jinja::Value::None());
  ctx.emplace_back("add_generation_prompt", jinja::Value::Bool(add_generation_prompt));
  absl::StatusOr<jinja::Rendered> r = tmpl_->Render(ctx);
  if (!r.ok()) return r.status();
  return RenderedChat{std::move(r->text), std::move(r->template_ranges)};
}

absl::StatusOr<std::string> ChatTemplate::RenderText(absl::Span<const ChatMessage> messages,
                                                     bool add_generation_prompt) const {
  HC_ASSIGN_OR_RETURN(RenderedChat r, Render(messages, add_generation_prompt));
  return std::move(r.text);
}

std::vector<TokenId> EncodeRendered(const Tokenizer& tokenizer, const RenderedChat& rendered,
                                    const std::atomic<bool>* cancel) {
  return tokenizer.EncodeWithSpecialRanges(rendered.text, rendered.template_ranges, cancel);
}

absl::StatusOr<std::vector<TokenId>> EncodeChat(const Tokenizer& tokenizer,
                                                const ChatTemplate& tmpl,
                                                absl::Span<const ChatMessage> messages,
                                                bool add_generation_prompt,
                                                const std::atomic<bool>* cancel) {
  HC_ASSIGN_OR_RETURN(RenderedChat r, tmpl.Render(messages, add_generation_prompt));
  return EncodeRendered(tokenizer, r, cancel);
}

}  // namespace hc
