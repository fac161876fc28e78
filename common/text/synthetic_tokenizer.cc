#include "common/text/synthetic_tokenizer.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/text/chat_template.h"
#include "common/text/synthetic_corpus.h"

namespace hc {

const std::vector<std::string>& SyntheticSpecialTokens() {
  static const auto* tokens = new std::vector<std::string>{"<|end_of_text|>", "<|pad|>",
                                                           "<|start_of_role|>", "<|end_of_role|>"};
  return *tokens;
}

std::vector<std::string> SyntheticSpecialTokens(const SyntheticTokenizerSpec& spec) {
  std::vector<std::string> tokens = SyntheticSpecialTokens();
  if (spec.chat_template == "nemotron-nano-v2") {
    for (const char* t : {"<SPECIAL_10>", "<SPECIAL_11>", "<SPECIAL_12>"}) tokens.push_back(t);
  } else if (spec.chat_template == "qwen3") {
    for (const char* t : {"<|im_start|>", "<|im_end|>"}) tokens.push_back(t);
  }
  return tokens;
}

int SyntheticEndOfTurnId(std::string_view chat_template) {
  return chat_template == "nemotron-nano-v2" ? 6
         : chat_template == "qwen3"          ? 5
                                             : kSyntheticEndOfTextId;
}

absl::StatusOr<SyntheticTokenizerSpec> SyntheticTokenizerSpecFor(
    std::string_view name, std::optional<PreTokenizerStyle> pre_tokenizer) {
  const size_t dash = name.rfind('-');
  const std::string_view preset = dash == std::string_view::npos ? name : name.substr(dash + 1);
  const PreTokenizerStyle style =
      pre_tokenizer.value_or(name.starts_with("granite-")    ? PreTokenizerStyle::kGranite4
                             : name.starts_with("nemotron-") ? PreTokenizerStyle::kNemotronH
                                                             : PreTokenizerStyle::kGpt2);
  const std::string chat_template = name.find("-qwen3-") != name.npos    ? "qwen3"
                                    : name.starts_with("granite-")       ? "granite-4.0-h"
                                    : name.starts_with("nemotron-nano-") ? "nemotron-nano-v2"
                                                                         : "granite";
  if (preset == "tiny")
    return SyntheticTokenizerSpec{.vocab_target = 1024,
                                  .augment_rounds = 0,
                                  .model_max_length = 4096,
                                  .pre_tokenizer = style,
                                  .chat_template = chat_template};
  if (preset == "small")
    return SyntheticTokenizerSpec{.vocab_target = 8192,
                                  .augment_rounds = 24,
                                  .model_max_length = 8192,
                                  .pre_tokenizer = style,
                                  .chat_template = chat_template};
  return absl::InvalidArgumentError(
      absl::StrCat("unknown synthetic preset \"", std::string(name), "\" (tiny or small)"));
}

BpeModel TrainSyntheticTokenizer(const SyntheticTokenizerSpec& spec) {
  BpeTrainerOptions opt;
  opt.vocab_size = spec.vocab_target;
  opt.min_frequency = 1;
  opt.special_tokens = SyntheticSpecialTokens(spec);
  opt.pre_tokenizer = spec.pre_tokenizer;
  const std::string corpus = spec.augment_rounds > 0 ? AugmentedSyntheticCorpus(spec.augment_rounds)
                                                     : std::string(SyntheticCorpus());
  return TrainBpe(corpus, opt);
}

std::string SyntheticTokenizerConfigJson(const BpeModel& tok, int model_max_length,
                                         std::string_view chat_template) {
  absl::StatusOr<ChatTemplate> tmpl = ChatTemplate::ByName(chat_template);
  HC_CHECK(tmpl.ok()) << "synthetic tokenizer names an unknown chat template: " << tmpl.status();
  using json::Value;
  Value root = Value::MakeObject();
  root.Set("add_bos_token", Value::Bool(false));
  root.Set("add_eos_token", Value::Bool(false));
  root.Set("add_prefix_space", Value::Bool(false));
  Value decoder = Value::MakeObject();
  for (int id = 0; id < tok.num_special; ++id) {
    Value t = Value::MakeObject();
    t.Set("content", Value::String(tok.vocab[id]));
    t.Set("lstrip", Value::Bool(false));
    t.Set("normalized", Value::Bool(false));
    t.Set("rstrip", Value::Bool(false));
    t.Set("single_word", Value::Bool(false));
    t.Set("special", Value::Bool(true));
    decoder.Set(std::to_string(id), std::move(t));
  }
  root.Set("added_tokens_decoder", std::move(decoder));
  root.Set("bos_token", Value::String(tok.vocab[kSyntheticEndOfTextId]));
  root.Set("eos_token", Value::String(tok.vocab[SyntheticEndOfTurnId(chat_template)]));
  root.Set("pad_token", Value::String(tok.vocab[kSyntheticPadId]));
  root.Set("chat_template", Value::String(tmpl->source()));
  root.Set("clean_up_tokenization_spaces", Value::Bool(false));
  root.Set("model_max_length", Value::Int(model_max_length));
  root.Set("padding_side", Value::String("left"));
  root.Set("tokenizer_class", Value::String("PreTrainedTokenizerFast"));
  return json::Serialize(root, {.indent = 2}) + "\n";
}

absl::Status WriteSyntheticTokenizerFiles(std::string_view preset, const std::string& dir,
                                          std::optional<PreTokenizerStyle> pre_tokenizer) {
  HC_ASSIGN_OR_RETURN(const SyntheticTokenizerSpec spec,
                      SyntheticTokenizerSpecFor(preset, pre_tokenizer));
  const BpeModel tok = TrainSyntheticTokenizer(spec);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  for (const auto& [name, text] :
       {std::pair<std::string, std::string>{"tokenizer.json", BpeTokenizerJson(tok) + "\n"},
        {"tokenizer_config.json",
         SyntheticTokenizerConfigJson(tok, spec.model_max_length, spec.chat_template)}}) {
    const std::string path = dir + "/" + name;
    std::ofstream out(path, std::ios::binary);
    out << text;
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace hc
