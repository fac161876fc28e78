#include "common/text/normalizer.h"

#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/text/unicode_regex.h"

namespace hc {
namespace {

class PrependStep : public Normalizer::Step {
 public:
  explicit PrependStep(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string Apply(std::string_view text) const override {
    return text.empty() ? std::string() : prefix_ + std::string(text);
  }

 private:
  std::string prefix_;
};

class ReplaceStep : public Normalizer::Step {
 public:
  ReplaceStep(std::unique_ptr<UnicodeRegex> regex, std::string content)
      : regex_(std::move(regex)), content_(std::move(content)) {}
  std::string Apply(std::string_view text) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    regex_->FindAll(text, &matches);
    std::string out;
    size_t prev = 0;
    for (const auto& [b, e] : matches) {
      out.append(text.substr(prev, b - prev));
      out.append(content_);
      prev = e;
    }
    out.append(text.substr(prev));
    return out;
  }

 private:
  std::unique_ptr<UnicodeRegex> regex_;
  std::string content_;
};

class UnicodeFormStep : public Normalizer::Step {
 public:
  explicit UnicodeFormStep(const icu::Normalizer2* form) : form_(form) {}
  std::string Apply(std::string_view text) const override {
    UErrorCode status = U_ZERO_ERROR;
    const icu::UnicodeString in =
        icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), text.size()));
    const icu::UnicodeString out = form_->normalize(in, status);
    std::string result;
    if (U_FAILURE(status)) return std::string(text);  // only on allocation failure
    out.toUTF8String(result);
    return result;
  }

 private:
  const icu::Normalizer2* form_;  // ICU's singleton, never freed
};

absl::StatusOr<std::unique_ptr<Normalizer::Step>> ParseUnicodeForm(const std::string& type) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* form = nullptr;
  if (type == "NFC") form = icu::Normalizer2::getNFCInstance(status);
  if (type == "NFKC") form = icu::Normalizer2::getNFKCInstance(status);
  if (type == "NFD") form = icu::Normalizer2::getNFDInstance(status);
  if (type == "NFKD") form = icu::Normalizer2::getNFKDInstance(status);
  if (form == nullptr || U_FAILURE(status)) {
    return absl::InternalError(
        absl::StrCat("ICU has no ", type, " normalizer: ", u_errorName(status)));
  }
  return std::make_unique<UnicodeFormStep>(form);
}

absl::StatusOr<std::unique_ptr<Normalizer::Step>> ParseReplace(const json::Value& v) {
  const json::Value* pattern = v.Find("pattern");
  const json::Value* content = v.Find("content");
  if (pattern == nullptr || !pattern->is_object() || content == nullptr || !content->is_string()) {
    return absl::InvalidArgumentError(
        "tokenizer.json: normalizer Replace needs a pattern object and a content string");
  }
  std::unique_ptr<UnicodeRegex> regex;
  if (const json::Value* r = pattern->Find("Regex"); r != nullptr && r->is_string()) {
    HC_ASSIGN_OR_RETURN(regex, UnicodeRegex::Compile(r->AsString()));
  } else if (const json::Value* s = pattern->Find("String");
             s != nullptr && s->is_string() && !s->AsString().empty()) {
    HC_ASSIGN_OR_RETURN(regex, UnicodeRegex::CompileLiteral(s->AsString()));
  } else {
    return absl::InvalidArgumentError(
        "tokenizer.json: normalizer Replace pattern must be {\"Regex\": ...} or a non-empty "
        "{\"String\": ...}");
  }
  return std::make_unique<ReplaceStep>(std::move(regex), content->AsString());
}

absl::Status ParseInto(const json::Value& v, std::vector<std::unique_ptr<Normalizer::Step>>* out) {
  const json::Value* type = v.Find("type");
  if (!v.is_object() || type == nullptr || !type->is_string()) {
    return absl::InvalidArgumentError("tokenizer.json: a normalizer without a type");
  }
  const std::string& t = type->AsString();
  if (t == "Sequence") {
    const json::Value* list = v.Find("normalizers");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError(
          "tokenizer.json: normalizer Sequence needs a normalizers array");
    }
    for (const json::Value& item : list->AsArray()) HC_RETURN_IF_ERROR(ParseInto(item, out));
    return absl::OkStatus();
  }
  std::unique_ptr<Normalizer::Step> step;
  if (t == "Prepend") {
    const json::Value* p = v.Find("prepend");
    if (p == nullptr || !p->is_string()) {
      return absl::InvalidArgumentError(
          "tokenizer.json: normalizer Prepend needs a prepend string");
    }
    step = std::make_unique<PrependStep>(p->AsString());
  } else if (t == "Replace") {
    HC_ASSIGN_OR_RETURN(step, ParseReplace(v));
  } else if (t == "NFC" || t == "NFKC" || t == "NFD" || t == "NFKD") {
    HC_ASSIGN_OR_RETURN(step, ParseUnicodeForm(t));
  } else {
    return absl::UnimplementedError(
        absl::StrCat("tokenizer.json: normalizer ", t, " is not supported"));
  }
  out->push_back(std::move(step));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> Normalizer::FromJson(const json::Value* spec) {
  std::unique_ptr<Normalizer> n(new Normalizer());
  if (spec == nullptr || spec->is_null()) return n;
  HC_RETURN_IF_ERROR(ParseInto(*spec, &n->steps_));
  return n;
}

std::string Normalizer::Normalize(std::string_view text) const {
  std::string s(text);
  for (const auto& step : steps_) s = step->Apply(s);
  return s;
}

}  // namespace hc
