// hc-tokenize: encodes text with a checkpoint's tokenizer, for cross-checks
// against Hugging Face `tokenizers` (tests/python/test_checkpoint_hf.py).
//   hc-tokenize --model DIR|synthetic:tiny [--chat]
// Reads one JSON value per stdin line and prints one JSON array of ids per
// line. Without --chat each line is a JSON string; with --chat it is a JSON
// array of {"role", "content"} messages, encoded with hc::EncodeChat (the
// checkpoint's chat template plus the generation prompt).
#include <cstdio>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_join.h"
#include "common/json.h"
#include "common/text/chat_template.h"
#include "common/text/tokenizer.h"
#include "worker/model/synthetic_checkpoint.h"

ABSL_FLAG(std::string, model, "synthetic:tiny", "checkpoint directory or synthetic:<preset>");
ABSL_FLAG(bool, chat, false, "input lines are message lists to render with the chat template");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
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
