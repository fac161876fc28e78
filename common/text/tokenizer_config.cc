#include "common/text/tokenizer_config.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/status_macros.h"

namespace hc {
namespace {

absl::Status ReadBool(const json::Value& root, const char* key, std::optional<bool>* out) {
  const json::Value* v = root.Find(key);
  if (v == nullptr || v->is_null()) return absl::OkStatus();
  if (!v->is_bool()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer_config.json: ", key, " must be true or false"));
  }
  *out = v->AsBool();
  return absl::OkStatus();
}

// A token is written as its content or as a serialized AddedToken.
absl::Status ReadToken(const json::Value& root, const char* key, std::string* out) {
  const json::Value* v = root.Find(key);
  if (v == nullptr || v->is_null()) return absl::OkStatus();
  if (v->is_object()) v = v->Find("content");
  if (v == nullptr || !v->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer_config.json: ", key, " must be a string or an object with a content string"));
  }
  *out = v->AsString();
  return absl::OkStatus();
}

std::optional<TokenId> Lookup(const std::optional<bool>& flag, const std::string& token,
                              const Tokenizer& tok) {
  if (!flag.value_or(false) || token.empty()) return std::nullopt;
  return tok.TokenToId(token);
}

}  // namespace

absl::StatusOr<TokenizerConfig> TokenizerConfig::FromJson(std::string_view json_text) {
  HC_ASSIGN_OR_RETURN(json::Value root, json::Parse(json_text));
  if (!root.is_object()) {
    return absl::InvalidArgumentError("tokenizer_config.json: not a JSON object");
  }
  TokenizerConfig c;
  HC_RETURN_IF_ERROR(ReadBool(root, "add_bos_token", &c.add_bos_token));
  HC_RETURN_IF_ERROR(ReadBool(root, "add_eos_token", &c.add_eos_token));
  HC_RETURN_IF_ERROR(ReadToken(root, "bos_token", &c.bos_token));
  HC_RETURN_IF_ERROR(ReadToken(root, "eos_token", &c.eos_token));
  return c;
}

absl::StatusOr<TokenizerConfig> TokenizerConfig::FromModelDir(const std::string& dir) {
  const std::string path = dir + "/tokenizer_config.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return TokenizerConfig{};
  HC_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  auto c = FromJson(text);
  if (!c.ok())
    return absl::Status(c.status().code(), absl::StrCat(path, ": ", c.status().message()));
  return c;
}

std::optional<TokenId> BosToPrepend(const TokenizerConfig& config, const Tokenizer& tok) {
  return Lookup(config.add_bos_token, config.bos_token, tok);
}

std::optional<TokenId> EosToAppend(const TokenizerConfig& config, const Tokenizer& tok) {
  return Lookup(config.add_eos_token, config.eos_token, tok);
}

}  // namespace hc
