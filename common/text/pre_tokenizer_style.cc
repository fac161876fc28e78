#include "common/text/pre_tokenizer_style.h"

#include <string>

namespace hc {
namespace {

json::Value ByteLevel(bool use_regex) {
  json::Value v = json::Value::MakeObject();
  v.Set("type", json::Value::String("ByteLevel"));
  v.Set("add_prefix_space", json::Value::Bool(false));
  v.Set("trim_offsets", json::Value::Bool(true));
  v.Set("use_regex", json::Value::Bool(use_regex));
  return v;
}

json::Value SplitThenByteLevel(std::string_view pattern) {
  json::Value regex = json::Value::MakeObject();
  regex.Set("Regex", json::Value::String(std::string(pattern)));
  json::Value split = json::Value::MakeObject();
  split.Set("type", json::Value::String("Split"));
  split.Set("pattern", std::move(regex));
  split.Set("behavior", json::Value::String("Isolated"));
  split.Set("invert", json::Value::Bool(false));
  json::Value list = json::Value::MakeArray();
  list.Append(std::move(split));
  list.Append(ByteLevel(/*use_regex=*/false));
  json::Value seq = json::Value::MakeObject();
  seq.Set("type", json::Value::String("Sequence"));
  seq.Set("pretokenizers", std::move(list));
  return seq;
}

}  // namespace

std::string_view PreTokenizerStyleName(PreTokenizerStyle style) {
  switch (style) {
    case PreTokenizerStyle::kGpt2:
      return "gpt2";
    case PreTokenizerStyle::kGranite4:
      return "granite4";
    case PreTokenizerStyle::kNemotronH:
      return "nemotron_h";
  }
  return "gpt2";
}

std::optional<PreTokenizerStyle> ParsePreTokenizerStyle(std::string_view name) {
  for (PreTokenizerStyle s :
       {PreTokenizerStyle::kGpt2, PreTokenizerStyle::kGranite4, PreTokenizerStyle::kNemotronH}) {
    if (PreTokenizerStyleName(s) == name) return s;
  }
  return std::nullopt;
}

json::Value PreTokenizerStyleJson(PreTokenizerStyle style) {
  switch (style) {
    case PreTokenizerStyle::kGpt2:
      return ByteLevel(/*use_regex=*/true);
    case PreTokenizerStyle::kGranite4:
      return SplitThenByteLevel(kCl100kSplitPattern);
    case PreTokenizerStyle::kNemotronH:
      return SplitThenByteLevel(kTekkenSplitPattern);
  }
  return ByteLevel(true);
}

}  // namespace hc
