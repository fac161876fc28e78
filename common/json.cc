#include "common/json.h"

#include <cmath>
#include <cstddef>
#include <iterator>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "nlohmann/json.hpp"

namespace hc::json {

// ---- Value -----------------------------------------------------------------

Value Value::Bool(bool b) {
  Value v;
  v.type_ = Type::kBool;
  v.bool_ = b;
  return v;
}

Value Value::Int(int64_t i) {
  Value v;
  v.type_ = Type::kNumber;
  v.is_int_ = true;
  v.int_ = i;
  v.double_ = static_cast<double>(i);
  return v;
}

Value Value::Double(double d) {
  Value v;
  v.type_ = Type::kNumber;
  v.double_ = d;
  return v;
}

Value Value::String(std::string s) {
  Value v;
  v.type_ = Type::kString;
  v.string_ = std::move(s);
  return v;
}

Value Value::MakeArray(Array items) {
  Value v;
  v.type_ = Type::kArray;
  v.array_ = std::move(items);
  return v;
}

Value Value::MakeObject(Object members) {
  Value v;
  v.type_ = Type::kObject;
  v.object_ = std::move(members);
  return v;
}

const char* TypeName(Value::Type type) {
  switch (type) {
    case Value::Type::kNull:
      return "null";
    case Value::Type::kBool:
      return "bool";
    case Value::Type::kNumber:
      return "number";
    case Value::Type::kString:
      return "string";
    case Value::Type::kArray:
      return "array";
    case Value::Type::kObject:
      return "object";
  }
  return "?";
}

#define HC_JSON_REQUIRE(t) \
  HC_CHECK(type_ == (t)) << "json::Value is " << TypeName(type_) << ", not " << TypeName(t)

bool Value::AsBool() const {
  HC_JSON_REQUIRE(Type::kBool);
  return bool_;
}
double Value::AsDouble() const {
  HC_JSON_REQUIRE(Type::kNumber);
  return double_;
}
int64_t Value::AsInt64() const {
  HC_JSON_REQUIRE(Type::kNumber);
  HC_CHECK(is_int_) << "json number " << double_ << " is not an exact int64";
  return int_;
}
const std::string& Value::AsString() const {
  HC_JSON_REQUIRE(Type::kString);
  return string_;
}
const Value::Array& Value::AsArray() const {
  HC_JSON_REQUIRE(Type::kArray);
  return array_;
}
const Value::Object& Value::AsObject() const {
  HC_JSON_REQUIRE(Type::kObject);
  return object_;
}
Value::Object& Value::MutableObject() {
  HC_JSON_REQUIRE(Type::kObject);
  return object_;
}

const Value* Value::Find(std::string_view key) const {
  if (type_ != Type::kObject) return nullptr;
  for (const Member& m : object_) {
    if (m.first == key) return &m.second;
  }
  return nullptr;
}

Value& Value::Set(std::string key, Value value) {
  if (type_ == Type::kNull) type_ = Type::kObject;
  HC_JSON_REQUIRE(Type::kObject);
  for (Member& m : object_) {
    if (m.first == key) {
      m.second = std::move(value);
      return m.second;
    }
  }
  object_.emplace_back(std::move(key), std::move(value));
  return object_.back().second;
}

Value& Value::Append(Value value) {
  if (type_ == Type::kNull) type_ = Type::kArray;
  HC_JSON_REQUIRE(Type::kArray);
  array_.push_back(std::move(value));
  return array_.back();
}

bool Value::operator==(const Value& o) const {
  if (type_ != o.type_) return false;
  switch (type_) {
    case Type::kNull:
      return true;
    case Type::kBool:
      return bool_ == o.bool_;
    case Type::kNumber:
      if (is_int_ && o.is_int_) return int_ == o.int_;
      return double_ == o.double_;
    case Type::kString:
      return string_ == o.string_;
    case Type::kArray:
      return array_ == o.array_;
    case Type::kObject:
      return object_ == o.object_;
  }
  return false;
}

namespace {

// ---- Parser ------------------------------------------------------------------
//
// nlohmann-json's SAX parser reads the text (RFC 8259: UTF-8 validated,
// \u escapes and surrogate pairs decoded, lone surrogates refused; iterative,
// so nesting cannot overflow the stack); Builder turns its events into a
// Value, refusing what nlohmann accepts but we do not: duplicate keys,
// nesting deeper than max_depth, numbers out of double's range.

// Python's json module writes non-finite doubles as bare NaN, Infinity and
// -Infinity, which no JSON parser reads. With allow_nan_infinity they are
// replaced (outside strings) by zeros written in ways that only this file
// writes, recognised by their exact text (a document that holds one itself is
// refused). Numbers out of double's range stay errors (nlohmann: "number
// overflow"), also where Python would read them as infinities.
constexpr std::string_view kNanLiteral = "0e-4823947239847239847239847";
constexpr std::string_view kInfLiteral = "0e-4823947239847239847239848";
constexpr std::string_view kNegInfLiteral = "-0e-4823947239847239847239848";

// Where a replacement went: [at, at + new_len) of the rewritten text was
// [orig, orig + old_len) of the original.
struct Replacement {
  size_t at = 0;
  size_t orig = 0;
  size_t old_len = 0;
  size_t new_len = 0;
};

// Rewrites NaN / Infinity / -Infinity outside strings.
std::string ReplaceNonFinite(std::string_view text, std::vector<Replacement>* out) {
  std::string result;
  result.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (in_string) {
      result.push_back(c);
      if (c == '\\' && i + 1 < text.size()) {
        result.push_back(text[i + 1]);
        i += 2;
        continue;
      }
      if (c == '"') in_string = false;
      ++i;
      continue;
    }
    if (c == '"') in_string = true;
    std::string_view literal;
    size_t len = 0;
    for (const auto& [word, lit] :
         {std::pair<std::string_view, std::string_view>{"NaN", kNanLiteral},
          {"Infinity", kInfLiteral},
          {"-Infinity", kNegInfLiteral}}) {
      if (text.substr(i, word.size()) == word) {
        literal = lit;
        len = word.size();
      }
    }
    if (len == 0) {
      result.push_back(c);
      ++i;
      continue;
    }
    out->push_back({result.size(), i, len, literal.size()});
    result.append(literal);
    i += len;
  }
  return result;
}

// The original offset of offset `pos` of the rewritten text.
size_t OriginalOffset(size_t pos, const std::vector<Replacement>& reps) {
  int64_t shift = 0;
  for (const Replacement& r : reps) {
    if (pos < r.at) break;
    if (pos < r.at + r.new_len) return r.orig;
    shift += static_cast<int64_t>(r.new_len) - static_cast<int64_t>(r.old_len);
  }
  return static_cast<size_t>(static_cast<int64_t>(pos) - shift);
}

// A pointer into the text that publishes how far the parser has read, so
// that the Builder's own errors can name a byte offset too.
class CountingIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  CountingIterator(const char* p, const char* base, size_t* read)
      : p_(p), base_(base), read_(read) {}
  reference operator*() const { return *p_; }
  CountingIterator& operator++() {
    ++p_;
    *read_ = static_cast<size_t>(p_ - base_);
    return *this;
  }
  CountingIterator operator++(int) {
    CountingIterator before = *this;
    ++*this;
    return before;
  }
  bool operator==(const CountingIterator& o) const { return p_ == o.p_; }
  bool operator!=(const CountingIterator& o) const { return p_ != o.p_; }

 private:
  const char* p_;
  const char* base_;
  size_t* read_;
};

class Builder {
 public:
  Builder(const ParseOptions& options, const size_t* read) : opt_(options), read_(read) {}

  // The error, with the (rewritten) byte offset it happened at.
  const std::optional<std::pair<size_t, std::string>>& error() const { return error_; }
  Value& root() { return root_; }

  // nlohmann::json's SAX interface.
  bool null() { return Add(Value()); }
  bool boolean(bool b) { return Add(Value::Bool(b)); }
  bool number_integer(int64_t i) { return Add(Value::Int(i)); }
  bool number_unsigned(uint64_t u) {
    if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Add(Value::Int(static_cast<int64_t>(u)));
    }
    return Add(Value::Double(static_cast<double>(u)));
  }
  bool number_float(double d, const std::string& literal) {
    if (opt_.allow_nan_infinity) {
      if (literal == kNanLiteral)
        return Add(Value::Double(std::numeric_limits<double>::quiet_NaN()));
      if (literal == kInfLiteral)
        return Add(Value::Double(std::numeric_limits<double>::infinity()));
      if (literal == kNegInfLiteral) {
        return Add(Value::Double(-std::numeric_limits<double>::infinity()));
      }
    }
    // nlohmann refuses overflowing literals itself; this is a backstop.
    if (!std::isfinite(d)) return Fail(absl::StrCat("number out of range: ", literal));
    return Add(Value::Double(d));
  }
  bool string(std::string& s) { return Add(Value::String(std::move(s))); }
  bool binary(nlohmann::json::binary_t&) { return Fail("binary data"); }
  bool start_object(size_t) { return Open(Value::MakeObject()); }
  bool key(std::string& k) {
    Level& level = stack_.back();
    const Value::Object& members = level.value->AsObject();
    bool duplicate = false;
    if (members.size() < kLinearLimit) {
      for (const Value::Member& m : members) duplicate = duplicate || m.first == k;
    } else {
      if (level.keys.empty()) {
        for (const Value::Member& m : members) level.keys.insert(m.first);
      }
      duplicate = !level.keys.insert(k).second;
    }
    if (duplicate) return Fail(absl::StrCat("duplicate object key \"", k, "\""));
    key_ = std::move(k);
    return true;
  }
  bool end_object() { return Close(); }
  bool start_array(size_t) { return Open(Value::MakeArray()); }
  bool end_array() { return Close(); }
  bool parse_error(size_t position, const std::string&, const nlohmann::json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax
    // error while parsing value - ..." -> "syntax error while parsing value - ...";
    // "[json.exception.out_of_range.406] number overflow parsing '1e400'" ->
    // "number overflow parsing '1e400'".
    std::string_view what = e.what();
    if (const size_t at = what.find("] "); at != std::string_view::npos) what.remove_prefix(at + 2);
    if (what.rfind("parse error", 0) == 0) {
      if (const size_t at = what.find(": "); at != std::string_view::npos)
        what.remove_prefix(at + 2);
    }
    // nlohmann counts the offending byte as read.
    error_.emplace(position > 0 ? position - 1 : 0, std::string(what));
    return false;
  }

 private:
  struct Level {
    Value* value;
    absl::flat_hash_set<std::string> keys;  // of big objects only
  };
  static constexpr size_t kLinearLimit = 16;

  bool Fail(std::string what) {
    error_.emplace(*read_ > 0 ? *read_ - 1 : 0, std::move(what));
    return false;
  }
  // Adds `v` where the document is; returns where it went.
  Value* Place(Value v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Value* top = stack_.back().value;
    if (top->is_array()) return &top->Append(std::move(v));
    Value::Object& members = top->MutableObject();
    members.emplace_back(std::move(key_), std::move(v));
    return &members.back().second;
  }
  bool Add(Value v) {
    Place(std::move(v));
    return true;
  }
  bool Open(Value container) {
    if (static_cast<int>(stack_.size()) > opt_.max_depth) return Fail("nesting too deep");
    // The parent does not grow while this container is open, so the pointer
    // stays valid.
    stack_.push_back({Place(std::move(container)), {}});
    return true;
  }
  bool Close() {
    stack_.pop_back();
    return true;
  }

  const ParseOptions opt_;
  const size_t* read_;
  Value root_;
  std::vector<Level> stack_;
  std::string key_;
  std::optional<std::pair<size_t, std::string>> error_;
};

// ---- Writer ------------------------------------------------------------------

// Scalars are written by nlohmann-json's serializer (shortest round-trip
// doubles, Python-like "1.0" for integral ones; string escaping with
// ensure_ascii as Python's, invalid UTF-8 replaced by U+FFFD); the layout
// around them is Write's.
void AppendDouble(double d, bool allow_nonfinite, std::string* out) {
  if (!std::isfinite(d)) {
    if (!allow_nonfinite) {
      out->append("null");
    } else if (std::isnan(d)) {
      out->append("NaN");
    } else {
      out->append(d > 0 ? "Infinity" : "-Infinity");
    }
    return;
  }
  out->append(nlohmann::json(d).dump());
}

void AppendQuoted(std::string_view s, bool ensure_ascii, std::string* out) {
  out->append(nlohmann::json(std::string(s))
                  .dump(-1, ' ', ensure_ascii, nlohmann::json::error_handler_t::replace));
}

void Write(const Value& v, const WriteOptions& opt, int level, std::string* out) {
  auto newline = [&](int lvl) {
    if (opt.indent > 0) {
      out->push_back('\n');
      out->append(static_cast<size_t>(opt.indent) * lvl, ' ');
    }
  };
  switch (v.type()) {
    case Value::Type::kNull:
      out->append("null");
      return;
    case Value::Type::kBool:
      out->append(v.AsBool() ? "true" : "false");
      return;
    case Value::Type::kNumber:
      if (v.is_int()) {
        absl::StrAppend(out, v.AsInt64());
      } else {
        AppendDouble(v.AsDouble(), opt.allow_nan_infinity, out);
      }
      return;
    case Value::Type::kString:
      AppendQuoted(v.AsString(), opt.ensure_ascii, out);
      return;
    case Value::Type::kArray: {
      const auto& a = v.AsArray();
      out->push_back('[');
      for (size_t i = 0; i < a.size(); ++i) {
        if (i > 0) out->push_back(',');
        newline(level + 1);
        Write(a[i], opt, level + 1, out);
      }
      if (!a.empty()) newline(level);
      out->push_back(']');
      return;
    }
    case Value::Type::kObject: {
      const auto& o = v.AsObject();
      out->push_back('{');
      for (size_t i = 0; i < o.size(); ++i) {
        if (i > 0) out->push_back(',');
        newline(level + 1);
        AppendQuoted(o[i].first, opt.ensure_ascii, out);
        out->append(opt.indent > 0 ? ": " : ":");
        Write(o[i].second, opt, level + 1, out);
      }
      if (!o.empty()) newline(level);
      out->push_back('}');
      return;
    }
  }
}

}  // namespace

absl::StatusOr<Value> Parse(std::string_view text, const ParseOptions& options) {
  std::vector<Replacement> reps;
  std::string rewritten;
  if (options.allow_nan_infinity) {
    for (std::string_view lit : {kNanLiteral, kInfLiteral}) {
      if (text.find(lit) != std::string_view::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("JSON parse error: the document contains the number literal ",
                         std::string(lit), ", which this parser reserves for NaN and Infinity"));
      }
    }
    rewritten = ReplaceNonFinite(text, &reps);
    text = rewritten;
  }
  size_t read = 0;
  Builder builder(options, &read);
  const CountingIterator begin(text.data(), text.data(), &read);
  const CountingIterator end(text.data() + text.size(), text.data(), &read);
  const bool ok = nlohmann::json::sax_parse(begin, end, &builder);
  if (ok && !builder.error().has_value()) return std::move(builder.root());
  const auto& [pos, what] = builder.error().has_value()
                                ? *builder.error()
                                : std::make_pair(text.size(), std::string("invalid document"));
  return absl::InvalidArgumentError(
      absl::StrCat("JSON parse error at byte ", OriginalOffset(pos, reps), ": ", what));
}

std::string Serialize(const Value& value, const WriteOptions& options) {
  std::string out;
  Write(value, options, 0, &out);
  return out;
}

}  // namespace hc::json
