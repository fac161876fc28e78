// hc-tokenize: encodes text with a checkpoint's tokenizer, for cross-checks
// against Hugging Face `tokenizers` (tests/python/test_checkpoint_hf.py,
// tests/python/test_tokenizer_diff.py).
//   hc-tokenize --model DIR|synthetic:tiny [--chat]
//   hc-tokenize --tokenizer_json FILE --batch
//   hc-tokenize --write_synthetic DIR [--preset tiny|small] [--style gpt2|granite4|nemotron_h]
// Reads one JSON value per stdin line and prints one JSON line per input.
// Without --chat or --batch each line is a JSON string and the output its
// ids. With --chat it is a JSON array of {"role", "content"} messages,
// encoded with hc::EncodeChat (the checkpoint's chat template plus the
// generation prompt). With --batch (only the tokenizer is loaded) each line
// is {"text": S} or {"ids": [...]}: for a text it prints {"ids" (Encode),
// "ids_plain" (special tokens as text), "ids_post" (with the post-processor),
// "decoded", "decoded_skip" (of "ids")}; for ids {"decoded", "decoded_skip"}.
// --write_synthetic writes the synthetic tokenizer files of a preset and
// pre-tokenizer style into DIR and exits.
#include <cstdio>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_join.h"
#include "common/json.h"
#include "common/text/chat_template.h"
#include "common/text/pre_tokenizer_style.h"
#include "common/text/synthetic_tokenizer.h"
#include "common/text/tokenizer.h"
#include "worker/model/synthetic_checkpoint.h"

ABSL_FLAG(std::string, model, "synthetic:tiny", "checkpoint directory or synthetic:<preset>");
ABSL_FLAG(bool, chat, false, "input lines are message lists to render with the chat template");
ABSL_FLAG(std::string, tokenizer_json, "", "a tokenizer.json to load instead of --model's");
ABSL_FLAG(bool, batch, false, "input lines are {\"text\"} or {\"ids\"} requests (see above)");
ABSL_FLAG(std::string, write_synthetic, "", "write the synthetic tokenizer files into this dir");
ABSL_FLAG(std::string, preset, "tiny", "synthetic preset for --write_synthetic");
ABSL_FLAG(std::string, style, "gpt2", "pre-tokenizer style for --write_synthetic");

namespace {

hc::json::Value Ids(const std::vector<hc::TokenId>& ids) {
  hc::json::Value a = hc::json::Value::MakeArray();
  for (hc::TokenId id : ids) a.Append(hc::json::Value::Int(id));
  return a;
}

// One --batch request; false on a malformed line.
bool Batch(const hc::Tokenizer& tok, const hc::json::Value& req) {
  using hc::json::Value;
  Value out = Value::MakeObject();
  std::vector<hc::TokenId> ids;
  if (const Value* text = req.Find("text"); text != nullptr && text->is_string()) {
    ids = tok.Encode(text->AsString());
    out.Set("ids", Ids(ids));
    out.Set("ids_plain", Ids(tok.Encode(text->AsString(), /*allow_special=*/false)));
    out.Set("ids_post", Ids(tok.PostProcess(ids)));
  } else if (const Value* in = req.Find("ids"); in != nullptr && in->is_array()) {
    for (const Value& v : in->AsArray()) {
      if (!v.is_int()) return false;
      ids.push_back(static_cast<hc::TokenId>(v.AsInt64()));
    }
  } else {
    return false;
  }
  out.Set("decoded", Value::String(tok.Decode(ids)));
  out.Set("decoded_skip", Value::String(tok.Decode(ids, /*skip_special=*/true)));
  std::cout << hc::json::Serialize(out) << "\n";
  return true;
}

int RunBatch(const std::string& path) {
  auto tok = hc::Tokenizer::FromFile(path);
  if (!tok.ok()) {
    std::fprintf(stderr, "hc-tokenize: %s\n", tok.status().ToString().c_str());
    return 1;
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    auto v = hc::json::Parse(line);
    if (!v.ok() || !Batch(**tok, *v)) {
      std::fprintf(stderr, "hc-tokenize: bad request line: %s\n", line.c_str());
      return 1;
    }
  }
  return 0;
}

int WriteSynthetic(const std::string& dir) {
  const auto style = hc::ParsePreTokenizerStyle(absl::GetFlag(FLAGS_style));
  if (!style.has_value()) {
    std::fprintf(stderr, "hc-tokenize: unknown --style %s (gpt2, granite4, nemotron_h)\n",
                 absl::GetFlag(FLAGS_style).c_str());
    return 1;
  }
  const absl::Status s = hc::WriteSyntheticTokenizerFiles(absl::GetFlag(FLAGS_preset), dir, *style);
  if (!s.ok()) {
    std::fprintf(stderr, "hc-tokenize: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (!absl::GetFlag(FLAGS_write_synthetic).empty()) {
    return WriteSynthetic(absl::GetFlag(FLAGS_write_synthetic));
  }
  if (absl::GetFlag(FLAGS_batch)) return RunBatch(absl::GetFlag(FLAGS_tokenizer_json));
  auto dir = hc::model::ResolveModelPath(absl::GetFlag(FLAGS_model));
  if (!dir.ok()) {
    std::fprintf(stderr, "hc-tokenize: %s\n", dir.status().ToString().c_str());
    return 1;
  }
  auto tok = hc::Tokenizer::FromFile(*dir + "/tokenizer.json");
  auto tmpl = hc::ChatTemplate::FromModelDir(*dir);
  if (!tok.ok() || !tmpl.ok()) {
    std::fprintf(stderr, "hc-tokenize: %s %s\n", tok.status().ToString().c_str(),
                 tmpl.status().ToString().c_str());
    return 1;
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    auto v = hc::json::Parse(line);
    if (!v.ok()) {
      std::fprintf(stderr, "hc-tokenize: %s\n", v.status().ToString().c_str());
      return 1;
    }
    std::vector<hc::TokenId> ids;
    if (absl::GetFlag(FLAGS_chat)) {
      std::vector<hc::ChatMessage> messages;
      for (const auto& m : v->AsArray()) {
        messages.push_back({m.Find("role")->AsString(), m.Find("content")->AsString()});
      }
      auto chat = hc::EncodeChat(**tok, *tmpl, messages, /*add_generation_prompt=*/true);
      if (!chat.ok()) {
        std::fprintf(stderr, "hc-tokenize: %s\n", chat.status().ToString().c_str());
        return 1;
      }
      ids = *std::move(chat);
    } else {
      ids = (*tok)->Encode(v->AsString());
    }
    std::cout << "[" << absl::StrJoin(ids, ",") << "]\n";
  }
  return 0;
}
