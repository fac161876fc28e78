#include "common/text/synthetic_tokenizer.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "common/status_macros.h"
#include "common/text/chat_template.h"
#include "common/text/synthetic_corpus.h"

namespace hc {

const std::vector<std::string>& SyntheticSpecialTokens() {
  static const auto* tokens = new std::vector<std::string>{"<|end_of_text|>", "<|pad|>",
                                                           "<|start_of_role|>", "<|end_of_role|>"};
  return *tokens;
}

absl::StatusOr<SyntheticTokenizerSpec> SyntheticTokenizerSpecFor(std::string_view name) {
  const size_t dash = name.rfind('-');
  const std::string_view preset = dash == std::string_view::npos ? name : name.substr(dash + 1);
  if (preset == "tiny")
    return SyntheticTokenizerSpec{
        .vocab_target = 1024, .augment_rounds = 0, .model_max_length = 4096};
  if (preset == "small")
    return SyntheticTokenizerSpec{
        .vocab_target = 8192, .augment_rounds = 24, .model_max_length = 8192};
  return absl::InvalidArgumentError(
      absl::StrCat("unknown synthetic preset \"", std::string(name), "\" (tiny or small)"));
}

BpeModel TrainSyntheticTokenizer(const SyntheticTokenizerSpec& spec) {
  BpeTrainerOptions opt;
  opt.vocab_size = spec.vocab_target;
  opt.min_frequency = 1;
  opt.special_tokens = SyntheticSpecialTokens();
  const std::string corpus = spec.augment_rounds > 0 ? AugmentedSyntheticCorpus(spec.augment_rounds)
                                                     : std::string(SyntheticCorpus());
  return TrainBpe(corpus, opt);
}

std::string SyntheticTokenizerConfigJson(const BpeModel& tok, int model_max_length) {
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
  root.Set("eos_token", Value::String(tok.vocab[kSyntheticEndOfTextId]));
  root.Set("pad_token", Value::String(tok.vocab[kSyntheticPadId]));
  root.Set("chat_template", Value::String(ChatTemplate::ByName("granite")->source()));
  root.Set("clean_up_tokenization_spaces", Value::Bool(false));
  root.Set("model_max_length", Value::Int(model_max_length));
  root.Set("padding_side", Value::String("left"));
  root.Set("tokenizer_class", Value::String("PreTrainedTokenizerFast"));
  return json::Serialize(root, {.indent = 2}) + "\n";
}

absl::Status WriteSyntheticTokenizerFiles(std::string_view preset, const std::string& dir) {
  HC_ASSIGN_OR_RETURN(const SyntheticTokenizerSpec spec, SyntheticTokenizerSpecFor(preset));
  const BpeModel tok = TrainSyntheticTokenizer(spec);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  for (const auto& [name, text] :
       {std::pair<std::string, std::string>{"tokenizer.json", BpeTokenizerJson(tok) + "\n"},
        {"tokenizer_config.json", SyntheticTokenizerConfigJson(tok, spec.model_max_length)}}) {
    const std::string path = dir + "/" + name;
    std::ofstream out(path, std::ios::binary);
    out << text;
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace hc
