#include "common/text/pre_tokenizer.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/text/byte_level.h"
#include "common/text/split_behavior.h"
#include "common/text/unicode_regex.h"

namespace hc {
namespace {

// Split / Digits / ByteLevel's GPT-2 split: a regex and a behavior.
class RegexSplitStep : public PreTokenizer::Step {
 public:
  RegexSplitStep(std::unique_ptr<UnicodeRegex> regex, SplitBehavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  void Apply(std::string_view piece, std::vector<std::string_view>* out,
             std::deque<std::string>*) const override {
    thread_local std::vector<std::pair<size_t, size_t>> matches;
    matches.clear();
    regex_->FindAll(piece, &matches);
    ApplySplitBehavior(piece, matches, behavior_, invert_, out);
  }

 private:
  std::unique_ptr<UnicodeRegex> regex_;
  SplitBehavior behavior_;
  bool invert_;
};

// ByteLevel: an optional leading space, then (use_regex) the GPT-2 split. The
// mapping to the byte-level alphabet itself happens in the BPE model, which
// works on raw bytes.
class ByteLevelStep : public PreTokenizer::Step {
 public:
  ByteLevelStep(bool add_prefix_space, std::unique_ptr<RegexSplitStep> split)
      : add_prefix_space_(add_prefix_space), split_(std::move(split)) {}
  void Apply(std::string_view piece, std::vector<std::string_view>* out,
             std::deque<std::string>* arena) const override {
    if (add_prefix_space_ && piece[0] != ' ') {
      arena->push_back(" " + std::string(piece));
      piece = arena->back();
    }
    if (split_ == nullptr) {
      out->push_back(piece);
    } else {
      split_->Apply(piece, out, arena);
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<RegexSplitStep> split_;  // null when use_regex is false
};

absl::StatusOr<bool> BoolField(const json::Value& v, std::string_view type, std::string_view key,
                               bool default_value) {
  const json::Value* f = v.Find(key);
  if (f == nullptr || f->is_null()) return default_value;
  if (!f->is_bool()) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: pre_tokenizer ",
                                                   std::string(type), ".", std::string(key),
                                                   " must be a boolean"));
  }
  return f->AsBool();
}

absl::StatusOr<std::unique_ptr<PreTokenizer::Step>> ParseSplit(const json::Value& v) {
  const json::Value* pattern = v.Find("pattern");
  std::unique_ptr<UnicodeRegex> regex;
  if (pattern != nullptr && pattern->is_object()) {
    if (const json::Value* r = pattern->Find("Regex"); r != nullptr && r->is_string()) {
      HC_ASSIGN_OR_RETURN(regex, UnicodeRegex::Compile(r->AsString()));
    } else if (const json::Value* s = pattern->Find("String"); s != nullptr && s->is_string()) {
      if (s->AsString().empty()) {
        return absl::UnimplementedError("tokenizer.json: pre_tokenizer Split with an empty String");
      }
      HC_ASSIGN_OR_RETURN(regex, UnicodeRegex::CompileLiteral(s->AsString()));
    }
  }
  if (regex == nullptr) {
    return absl::InvalidArgumentError(
        "tokenizer.json: pre_tokenizer Split needs pattern {\"Regex\": ...} or {\"String\": ...}");
  }
  const json::Value* behavior = v.Find("behavior");
  const std::optional<SplitBehavior> b = behavior != nullptr && behavior->is_string()
                                             ? ParseSplitBehavior(behavior->AsString())
                                             : std::nullopt;
  if (!b.has_value()) {
    return absl::UnimplementedError(absl::StrCat(
        "tokenizer.json: pre_tokenizer Split behavior ",
        behavior != nullptr && behavior->is_string() ? behavior->AsString() : "(missing)",
        " is not supported"));
  }
  HC_ASSIGN_OR_RETURN(const bool invert, BoolField(v, "Split", "invert", false));
  return std::make_unique<RegexSplitStep>(std::move(regex), *b, invert);
}

absl::StatusOr<std::unique_ptr<PreTokenizer::Step>> ParseDigits(const json::Value& v) {
  HC_ASSIGN_OR_RETURN(const bool individual, BoolField(v, "Digits", "individual_digits", false));
  HC_ASSIGN_OR_RETURN(auto regex, UnicodeRegex::Compile(R"(\p{N})"));
  return std::make_unique<RegexSplitStep>(
      std::move(regex), individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false);
}

absl::StatusOr<std::unique_ptr<PreTokenizer::Step>> ParseByteLevel(const json::Value& v) {
  HC_ASSIGN_OR_RETURN(const bool prefix, BoolField(v, "ByteLevel", "add_prefix_space", true));
  HC_ASSIGN_OR_RETURN(const bool use_regex, BoolField(v, "ByteLevel", "use_regex", true));
  std::unique_ptr<RegexSplitStep> split;
  if (use_regex) {
    HC_ASSIGN_OR_RETURN(auto regex, UnicodeRegex::Compile(kGpt2SplitPattern));
    split = std::make_unique<RegexSplitStep>(std::move(regex), SplitBehavior::kIsolated, false);
  }
  return std::make_unique<ByteLevelStep>(prefix, std::move(split));
}

// Flattens Sequences. `byte_level_seen` is set by the ByteLevel step.
absl::Status ParseInto(const json::Value& v, std::vector<std::unique_ptr<PreTokenizer::Step>>* out,
                       bool* byte_level_seen) {
  const json::Value* type = v.Find("type");
  if (!v.is_object() || type == nullptr || !type->is_string()) {
    return absl::InvalidArgumentError("tokenizer.json: a pre_tokenizer without a type");
  }
  const std::string& t = type->AsString();
  if (*byte_level_seen) {
    return absl::UnimplementedError(absl::StrCat(
        "tokenizer.json: pre_tokenizer ", t,
        " after ByteLevel (ByteLevel must be the last pre-tokenizer) is not supported"));
  }
  if (t == "Sequence") {
    const json::Value* list = v.Find("pretokenizers");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError(
          "tokenizer.json: pre_tokenizer Sequence needs a pretokenizers array");
    }
    for (const json::Value& item : list->AsArray()) {
      HC_RETURN_IF_ERROR(ParseInto(item, out, byte_level_seen));
    }
    return absl::OkStatus();
  }
  std::unique_ptr<PreTokenizer::Step> step;
  if (t == "Split") {
    HC_ASSIGN_OR_RETURN(step, ParseSplit(v));
  } else if (t == "Digits") {
    HC_ASSIGN_OR_RETURN(step, ParseDigits(v));
  } else if (t == "ByteLevel") {
    HC_ASSIGN_OR_RETURN(step, ParseByteLevel(v));
    *byte_level_seen = true;
  } else {
    return absl::UnimplementedError(
        absl::StrCat("tokenizer.json: pre_tokenizer ", t, " is not supported"));
  }
  out->push_back(std::move(step));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::FromJson(const json::Value* spec) {
  if (spec == nullptr || spec->is_null()) {
    return absl::UnimplementedError(
        "tokenizer.json: no pre_tokenizer (byte-level BPE needs a ByteLevel pre-tokenizer)");
  }
  std::unique_ptr<PreTokenizer> pre(new PreTokenizer());
  bool byte_level = false;
  HC_RETURN_IF_ERROR(ParseInto(*spec, &pre->steps_, &byte_level));
  if (!byte_level) {
    return absl::UnimplementedError(
        "tokenizer.json: pre_tokenizer without ByteLevel (only byte-level BPE is supported)");
  }
  return pre;
}

void PreTokenizer::Run(std::string_view text, std::vector<std::string_view>* words,
                       std::deque<std::string>* arena) const {
  std::vector<std::string_view> pieces{text}, next;
  for (const auto& step : steps_) {
    next.clear();
    for (std::string_view p : pieces) step->Apply(p, &next, arena);
    pieces.swap(next);
  }
  words->insert(words->end(), pieces.begin(), pieces.end());
}

}  // namespace hc
