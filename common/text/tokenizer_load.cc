// Tokenizer::FromJson: reads and checks each section of tokenizer.json.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/status_macros.h"
#include "common/text/tokenizer.h"

namespace hc {
namespace {

constexpr int64_t kMaxId = 1 << 24;

// The decoder must turn byte-level tokens back into bytes: ByteLevel, alone
// or in a Sequence.
absl::Status CheckDecoder(const json::Value* dec) {
  if (dec == nullptr || dec->is_null()) {
    return absl::UnimplementedError(
        "tokenizer.json: no decoder (byte-level BPE needs the ByteLevel decoder)");
  }
  const json::Value* type = dec->Find("type");
  const std::string t = type != nullptr && type->is_string() ? type->AsString() : "(no type)";
  if (t == "ByteLevel") return absl::OkStatus();
  if (t == "Sequence") {
    const json::Value* list = dec->Find("decoders");
    if (list == nullptr || !list->is_array() || list->AsArray().empty()) {
      return absl::InvalidArgumentError("tokenizer.json: decoder Sequence needs a decoders array");
    }
    for (const json::Value& d : list->AsArray()) HC_RETURN_IF_ERROR(CheckDecoder(&d));
    return absl::OkStatus();
  }
  return absl::UnimplementedError(
      absl::StrCat("tokenizer.json: decoder ", t, " is not supported (only ByteLevel)"));
}

absl::StatusOr<bool> Flag(const json::Value& token, std::string_view key, bool default_value) {
  const json::Value* v = token.Find(key);
  if (v == nullptr || v->is_null()) return default_value;
  if (!v->is_bool()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json: added token field ", std::string(key), " must be a boolean"));
  }
  return v->AsBool();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  HC_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  auto tok = FromJson(text);
  if (!tok.ok()) {
    return absl::Status(tok.status().code(), absl::StrCat(path, ": ", tok.status().message()));
  }
  return tok;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view json_text) {
  HC_ASSIGN_OR_RETURN(json::Value root, json::Parse(json_text));
  if (!root.is_object()) return absl::InvalidArgumentError("tokenizer.json: not a JSON object");
  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  HC_RETURN_IF_ERROR(tok->LoadComponents(root));
  HC_RETURN_IF_ERROR(tok->LoadAddedTokens(root));
  tok->IndexTokens();
  return tok;
}

absl::Status Tokenizer::LoadComponents(const json::Value& root) {
  HC_ASSIGN_OR_RETURN(normalizer_, Normalizer::FromJson(root.Find("normalizer")));
  HC_ASSIGN_OR_RETURN(pre_tokenizer_, PreTokenizer::FromJson(root.Find("pre_tokenizer")));
  const json::Value* model = root.Find("model");
  if (!model || !model->is_object()) return absl::InvalidArgumentError("tokenizer.json: no model");
  HC_RETURN_IF_ERROR(model_.Load(*model));
  HC_RETURN_IF_ERROR(CheckDecoder(root.Find("decoder")));
  HC_ASSIGN_OR_RETURN(post_processor_, PostProcessor::FromJson(root.Find("post_processor")));
  for (const auto& [token, id] : model_.vocab()) {
    EnsureId(id);
    id_to_bytes_[id] = ByteLevelDecode(token);
    has_id_[id] = true;
  }
  return absl::OkStatus();
}

void Tokenizer::EnsureId(TokenId id) {
  if (static_cast<size_t>(id) >= id_to_bytes_.size()) {
    id_to_bytes_.resize(id + 1);
    has_id_.resize(id + 1, false);
    is_special_.resize(id + 1, false);
  }
}

absl::Status Tokenizer::LoadAddedTokens(const json::Value& root) {
  const json::Value* added = root.Find("added_tokens");
  if (added != nullptr && !added->is_null() && !added->is_array()) {
    return absl::InvalidArgumentError("tokenizer.json: added_tokens must be an array");
  }
  std::vector<AddedToken> raw, normalized;
  std::vector<std::string> raw_patterns, normalized_patterns;
  if (added != nullptr && added->is_array()) {
    for (const json::Value& a : added->AsArray()) {
      const json::Value* id = a.Find("id");
      const json::Value* content = a.Find("content");
      if (!id || !id->is_int() || id->AsInt64() < 0 || id->AsInt64() >= kMaxId || !content ||
          !content->is_string() || content->AsString().empty()) {
        return absl::InvalidArgumentError("tokenizer.json: added token without a valid id/content");
      }
      AddedToken t;
      t.id = static_cast<TokenId>(id->AsInt64());
      t.content = content->AsString();
      HC_ASSIGN_OR_RETURN(t.special, Flag(a, "special", false));
      HC_ASSIGN_OR_RETURN(t.single_word, Flag(a, "single_word", false));
      HC_ASSIGN_OR_RETURN(t.lstrip, Flag(a, "lstrip", false));
      HC_ASSIGN_OR_RETURN(t.rstrip, Flag(a, "rstrip", false));
      HC_ASSIGN_OR_RETURN(t.normalized, Flag(a, "normalized", !t.special));
      EnsureId(t.id);
      // `tokenizers` keeps a normalized token's content normalized (that is
      // the token string it decodes), and decodes added tokens through the
      // decoder too.
      const std::string pattern = t.normalized ? normalizer_->Normalize(t.content) : t.content;
      id_to_bytes_[t.id] = ByteLevelDecode(pattern);
      has_id_[t.id] = true;
      is_special_[t.id] = t.special;
      added_by_content_[t.content] = t.id;
      added_.push_back(t);
      if (t.normalized) {
        added_by_content_.try_emplace(pattern, t.id);
        normalized_patterns.push_back(pattern);
        normalized.push_back(std::move(t));
      } else {
        raw_patterns.push_back(t.content);
        raw.push_back(std::move(t));
      }
    }
  }
  raw_matcher_ = std::make_unique<AddedTokenMatcher>(std::move(raw), std::move(raw_patterns));
  normalized_matcher_ =
      std::make_unique<AddedTokenMatcher>(std::move(normalized), std::move(normalized_patterns));
  return absl::OkStatus();
}

void Tokenizer::IndexTokens() {
  for (const std::string& bytes : id_to_bytes_) {
    max_token_bytes_ = std::max(max_token_bytes_, bytes.size());
  }
}

}  // namespace hc
