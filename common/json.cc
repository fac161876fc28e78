#include "common/json.h"

#include <cmath>
#include <limits>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "common/utf8.h"

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

class Parser {
 public:
  Parser(std::string_view text, const ParseOptions& options) : s_(text), opt_(options) {}

  absl::StatusOr<Value> ParseDocument() {
    Value v;
    absl::Status st = ParseValue(0, &v);
    if (!st.ok()) return st;
    SkipWs();
    if (pos_ != s_.size()) return Error("unexpected trailing characters");
    return v;
  }

 private:
  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON parse error at byte ", pos_, ": ", std::string(what)));
  }

  void SkipWs() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool ConsumeLiteral(std::string_view lit) {
    if (s_.substr(pos_, lit.size()) == lit) {
      pos_ += lit.size();
      return true;
    }
    return false;
  }

  absl::Status ParseValue(int depth, Value* out) {
    if (depth > opt_.max_depth) return Error("nesting too deep");
    SkipWs();
    if (pos_ >= s_.size()) return Error("unexpected end of input, expected a value");
    const char c = s_[pos_];
    switch (c) {
      case '{':
        return ParseObject(depth, out);
      case '[':
        return ParseArray(depth, out);
      case '"': {
        std::string str;
        absl::Status st = ParseString(&str);
        if (!st.ok()) return st;
        *out = Value::String(std::move(str));
        return absl::OkStatus();
      }
      case 't':
        if (ConsumeLiteral("true")) {
          *out = Value::Bool(true);
          return absl::OkStatus();
        }
        break;
      case 'f':
        if (ConsumeLiteral("false")) {
          *out = Value::Bool(false);
          return absl::OkStatus();
        }
        break;
      case 'n':
        if (ConsumeLiteral("null")) {
          *out = Value();
          return absl::OkStatus();
        }
        break;
      case 'N':
        if (opt_.allow_nan_infinity && ConsumeLiteral("NaN")) {
          *out = Value::Double(std::numeric_limits<double>::quiet_NaN());
          return absl::OkStatus();
        }
        break;
      case 'I':
        if (opt_.allow_nan_infinity && ConsumeLiteral("Infinity")) {
          *out = Value::Double(std::numeric_limits<double>::infinity());
          return absl::OkStatus();
        }
        break;
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber(out);
    }
    return Error(absl::StrCat("unexpected character '", std::string(1, s_[pos_]), "'"));
  }

  absl::Status ParseNumber(Value* out) {
    const size_t start = pos_;
    if (s_[pos_] == '-') {
      ++pos_;
      if (opt_.allow_nan_infinity && ConsumeLiteral("Infinity")) {
        *out = Value::Double(-std::numeric_limits<double>::infinity());
        return absl::OkStatus();
      }
    }
    auto digit = [&](size_t i) { return i < s_.size() && s_[i] >= '0' && s_[i] <= '9'; };
    if (!digit(pos_)) return Error("invalid number: expected a digit");
    if (s_[pos_] == '0') {
      ++pos_;
      if (digit(pos_)) return Error("invalid number: leading zero");
    } else {
      while (digit(pos_)) ++pos_;
    }
    bool integral = true;
    if (pos_ < s_.size() && s_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (!digit(pos_)) return Error("invalid number: expected a digit after '.'");
      while (digit(pos_)) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digit(pos_)) return Error("invalid number: expected a digit in the exponent");
      while (digit(pos_)) ++pos_;
    }
    const std::string lit(s_.substr(start, pos_ - start));
    int64_t i = 0;
    if (integral && absl::SimpleAtoi(lit, &i)) {
      *out = Value::Int(i);
      return absl::OkStatus();
    }
    double d = 0;
    if (!absl::SimpleAtod(lit, &d) || std::isinf(d)) {
      pos_ = start;
      return Error(absl::StrCat("number out of range: ", lit));
    }
    *out = Value::Double(d);
    return absl::OkStatus();
  }

  absl::Status ParseHex4(uint32_t* v) {
    if (pos_ + 4 > s_.size()) return Error("truncated \\u escape");
    *v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[pos_++];
      *v <<= 4;
      if (c >= '0' && c <= '9')
        *v |= c - '0';
      else if (c >= 'a' && c <= 'f')
        *v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        *v |= c - 'A' + 10;
      else {
        --pos_;
        return Error("invalid hex digit in \\u escape");
      }
    }
    return absl::OkStatus();
  }

  absl::Status ParseString(std::string* out) {
    ++pos_;  // opening quote
    while (true) {
      if (pos_ >= s_.size()) return Error("unterminated string");
      const auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return absl::OkStatus();
      }
      if (c < 0x20) return Error("unescaped control character in string");
      if (c == '\\') {
        ++pos_;
        if (pos_ >= s_.size()) return Error("unterminated escape");
        const char e = s_[pos_++];
        switch (e) {
          case '"':
            out->push_back('"');
            break;
          case '\\':
            out->push_back('\\');
            break;
          case '/':
            out->push_back('/');
            break;
          case 'b':
            out->push_back('\b');
            break;
          case 'f':
            out->push_back('\f');
            break;
          case 'n':
            out->push_back('\n');
            break;
          case 'r':
            out->push_back('\r');
            break;
          case 't':
            out->push_back('\t');
            break;
          case 'u': {
            const size_t esc_start = pos_ - 2;
            uint32_t cp = 0;
            absl::Status st = ParseHex4(&cp);
            if (!st.ok()) return st;
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
              pos_ = esc_start;
              return Error("lone low surrogate in \\u escape");
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (!ConsumeLiteral("\\u")) {
                pos_ = esc_start;
                return Error("high surrogate not followed by a \\u low surrogate");
              }
              uint32_t lo = 0;
              st = ParseHex4(&lo);
              if (!st.ok()) return st;
              if (lo < 0xDC00 || lo > 0xDFFF) {
                pos_ = esc_start;
                return Error("high surrogate not followed by a low surrogate");
              }
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            utf8::Append(cp, out);
            break;
          }
          default:
            --pos_;
            return Error("invalid escape character");
        }
        continue;
      }
      uint32_t cp;
      const size_t len = utf8::Decode(s_, pos_, &cp);
      if (len == 0) return Error("invalid UTF-8 in string");
      out->append(s_.substr(pos_, len));
      pos_ += len;
    }
  }

  absl::Status ParseArray(int depth, Value* out) {
    ++pos_;
    Value::Array items;
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      *out = Value::MakeArray(std::move(items));
      return absl::OkStatus();
    }
    while (true) {
      Value item;
      absl::Status st = ParseValue(depth + 1, &item);
      if (!st.ok()) return st;
      items.push_back(std::move(item));
      SkipWs();
      if (pos_ >= s_.size()) return Error("unterminated array");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == ']') {
        ++pos_;
        break;
      }
      return Error("expected ',' or ']' in array");
    }
    *out = Value::MakeArray(std::move(items));
    return absl::OkStatus();
  }

  absl::Status ParseObject(int depth, Value* out) {
    ++pos_;
    Value::Object members;
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      *out = Value::MakeObject(std::move(members));
      return absl::OkStatus();
    }
    absl::flat_hash_set<std::string> seen;
    while (true) {
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != '"') return Error("expected a string key in object");
      const size_t key_pos = pos_;
      std::string key;
      absl::Status st = ParseString(&key);
      if (!st.ok()) return st;
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != ':') return Error("expected ':' after object key");
      ++pos_;
      Value v;
      st = ParseValue(depth + 1, &v);
      if (!st.ok()) return st;
      members.emplace_back(std::move(key), std::move(v));
      if (!CheckDuplicate(members, &seen)) {
        pos_ = key_pos;
        return Error(absl::StrCat("duplicate object key \"", members.back().first, "\""));
      }
      SkipWs();
      if (pos_ >= s_.size()) return Error("unterminated object");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == '}') {
        ++pos_;
        break;
      }
      return Error("expected ',' or '}' in object");
    }
    *out = Value::MakeObject(std::move(members));
    return absl::OkStatus();
  }

  // Returns false when the last member's key already occurs. Small objects
  // scan linearly; big ones (e.g. a tokenizer vocab) use `seen`.
  static bool CheckDuplicate(const Value::Object& members, absl::flat_hash_set<std::string>* seen) {
    const std::string& key = members.back().first;
    if (members.size() <= kLinearLimit) {
      for (size_t i = 0; i + 1 < members.size(); ++i) {
        if (members[i].first == key) return false;
      }
      return true;
    }
    if (seen->empty()) {
      for (size_t i = 0; i + 1 < members.size(); ++i) seen->insert(members[i].first);
    }
    return seen->insert(key).second;
  }

  static constexpr size_t kLinearLimit = 16;
  std::string_view s_;
  ParseOptions opt_;
  size_t pos_ = 0;
};

// ---- Writer ------------------------------------------------------------------

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
  std::string s;
  for (int precision = 15; precision <= 17; ++precision) {
    s = absl::StrFormat("%.*g", precision, d);
    double back = 0;
    if (absl::SimpleAtod(s, &back) && back == d) break;
  }
  // Keep doubles recognisable as non-integers (like Python's repr: 1.0).
  if (s.find_first_of(".eEn") == std::string::npos) s.append(".0");
  out->append(s);
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

void AppendQuoted(std::string_view s, bool ensure_ascii, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  auto append_u = [&](uint32_t u) {
    out->append("\\u");
    for (int shift = 12; shift >= 0; shift -= 4) out->push_back(kHex[(u >> shift) & 0xF]);
  };
  out->push_back('"');
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out->append("\\\"");
        ++i;
        continue;
      case '\\':
        out->append("\\\\");
        ++i;
        continue;
      case '\n':
        out->append("\\n");
        ++i;
        continue;
      case '\r':
        out->append("\\r");
        ++i;
        continue;
      case '\t':
        out->append("\\t");
        ++i;
        continue;
      case '\b':
        out->append("\\b");
        ++i;
        continue;
      case '\f':
        out->append("\\f");
        ++i;
        continue;
      default:
        break;
    }
    if (c < 0x20) {
      append_u(c);
      ++i;
      continue;
    }
    if (c < 0x80 || !ensure_ascii) {
      out->push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    uint32_t cp;
    const size_t len = utf8::Decode(s, i, &cp);
    if (len == 0) {  // invalid UTF-8: write U+FFFD rather than broken JSON
      append_u(0xFFFD);
      ++i;
      continue;
    }
    if (cp >= 0x10000) {
      const uint32_t v = cp - 0x10000;
      append_u(0xD800 + (v >> 10));
      append_u(0xDC00 + (v & 0x3FF));
    } else {
      append_u(cp);
    }
    i += len;
  }
  out->push_back('"');
}

absl::StatusOr<Value> Parse(std::string_view text, const ParseOptions& options) {
  Parser parser(text, options);
  return parser.ParseDocument();
}

std::string Serialize(const Value& value, const WriteOptions& options) {
  std::string out;
  Write(value, options, 0, &out);
  return out;
}

}  // namespace hc::json
