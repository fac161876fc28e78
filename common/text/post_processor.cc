#include "common/text/post_processor.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace hc {

absl::StatusOr<PostProcessor> PostProcessor::FromJson(const json::Value* spec) {
  PostProcessor p;
  if (spec == nullptr || spec->is_null()) return p;
  const json::Value* type = spec->Find("type");
  if (!spec->is_object() || type == nullptr || !type->is_string()) {
    return absl::InvalidArgumentError("tokenizer.json: a post_processor without a type");
  }
  const std::string& t = type->AsString();
  if (t == "ByteLevel") return p;  // adjusts offsets only
  if (t == "TemplateProcessing") {
    HC_RETURN_IF_ERROR(p.ParseTemplate(*spec));
    return p;
  }
  if (t == "Sequence") {
    const json::Value* list = spec->Find("processors");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError(
          "tokenizer.json: post_processor Sequence needs a processors array");
    }
    bool have_template = false;
    for (const json::Value& item : list->AsArray()) {
      HC_ASSIGN_OR_RETURN(PostProcessor inner, FromJson(&item));
      if (inner.prefix_.empty() && inner.suffix_.empty()) continue;
      if (have_template) {
        return absl::UnimplementedError(
            "tokenizer.json: a post_processor Sequence with two templates is not supported");
      }
      have_template = true;
      p = std::move(inner);
    }
    return p;
  }
  return absl::UnimplementedError(
      absl::StrCat("tokenizer.json: post_processor ", t, " is not supported"));
}

absl::Status PostProcessor::ParseTemplate(const json::Value& spec) {
  const json::Value* single = spec.Find("single");
  const json::Value* specials = spec.Find("special_tokens");
  if (single == nullptr || !single->is_array()) {
    return absl::InvalidArgumentError(
        "tokenizer.json: TemplateProcessing needs a \"single\" template array");
  }
  bool seen_sequence = false;
  for (const json::Value& piece : single->AsArray()) {
    if (const json::Value* seq = piece.Find("Sequence"); seq != nullptr) {
      const json::Value* id = seq->Find("id");
      if (seen_sequence || id == nullptr || !id->is_string() || id->AsString() != "A") {
        return absl::InvalidArgumentError(
            "tokenizer.json: TemplateProcessing single template must hold $A once");
      }
      seen_sequence = true;
      continue;
    }
    const json::Value* tok = piece.Find("SpecialToken");
    const json::Value* name = tok != nullptr ? tok->Find("id") : nullptr;
    if (name == nullptr || !name->is_string()) {
      return absl::InvalidArgumentError(
          "tokenizer.json: TemplateProcessing piece is neither Sequence nor SpecialToken");
    }
    const json::Value* entry = specials != nullptr ? specials->Find(name->AsString()) : nullptr;
    const json::Value* ids = entry != nullptr ? entry->Find("ids") : nullptr;
    if (ids == nullptr || !ids->is_array()) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: TemplateProcessing token \"",
                                                     name->AsString(),
                                                     "\" is missing from special_tokens"));
    }
    for (const json::Value& id : ids->AsArray()) {
      if (!id.is_int() || id.AsInt64() < 0 || id.AsInt64() > INT32_MAX) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer.json: TemplateProcessing token \"", name->AsString(),
                         "\" has an invalid id"));
      }
      (seen_sequence ? suffix_ : prefix_).push_back(static_cast<int32_t>(id.AsInt64()));
    }
  }
  if (!seen_sequence) {
    return absl::InvalidArgumentError(
        "tokenizer.json: TemplateProcessing single template lacks $A");
  }
  return absl::OkStatus();
}

std::vector<int32_t> PostProcessor::Apply(absl::Span<const int32_t> ids) const {
  std::vector<int32_t> out;
  out.reserve(prefix_.size() + ids.size() + suffix_.size());
  out.insert(out.end(), prefix_.begin(), prefix_.end());
  out.insert(out.end(), ids.begin(), ids.end());
  out.insert(out.end(), suffix_.begin(), suffix_.end());
  return out;
}

}  // namespace hc
