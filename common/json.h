// Typed JSON values for configuration files, tokenizer files and safetensors
// headers, read and written with nlohmann-json (Debian nlohmann-json3-dev, the
// project's one JSON library; router/http uses it directly). This layer adds
// what those loaders rely on and nlohmann's own value type does not give:
//
// - Objects keep insertion order; duplicate keys are a parse error.
// - Numbers keep both forms: an integer literal that fits in int64 is stored
//   exactly (is_int()), every number also as a double.
// - Strings are UTF-8; \uXXXX escapes (surrogate pairs included) are decoded,
//   invalid UTF-8 or lone surrogates are rejected.
// - Numbers beyond double's range (1e400) are errors; nesting deeper than
//   ParseOptions::max_depth is an error (nlohmann's parser is iterative, so a
//   deep document never overflows the stack).
// - Errors are INVALID_ARGUMENT and name the byte offset of the problem and
//   what was wrong ("JSON parse error at byte 12: syntax error while parsing
//   value - unexpected ','; expected '[', '{', or a literal").
//
// Thread-safety: a Value is a plain value type (copyable, movable); concurrent
// const access is safe.
#ifndef HC_COMMON_JSON_H_
#define HC_COMMON_JSON_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace hc::json {

class Value {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  using Array = std::vector<Value>;
  using Member = std::pair<std::string, Value>;
  using Object = std::vector<Member>;

  Value() = default;  // null
  static Value Null() { return Value(); }
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Double(double d);
  static Value String(std::string s);
  static Value MakeArray(Array items = {});
  static Value MakeObject(Object members = {});

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  bool is_int() const { return type_ == Type::kNumber && is_int_; }  // exact int64
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }

  // Accessors. REQUIRES: the matching type (checked; a mismatch aborts, so
  // callers validate input with the is_*() predicates or the Get* helpers).
  bool AsBool() const;
  double AsDouble() const;
  int64_t AsInt64() const;  // REQUIRES: is_int()
  const std::string& AsString() const;
  const Array& AsArray() const;
  const Object& AsObject() const;
  Object& MutableObject();

  // Object member lookup (linear). nullptr when absent or not an object.
  const Value* Find(std::string_view key) const;
  // Sets `key` (replacing an existing member in place, else appending).
  // REQUIRES: is_object() or is_null() (null becomes an empty object).
  Value& Set(std::string key, Value value);
  // REQUIRES: is_array() or is_null() (null becomes an empty array).
  Value& Append(Value value);

  bool operator==(const Value& other) const;
  bool operator!=(const Value& other) const { return !(*this == other); }

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  bool is_int_ = false;
  int64_t int_ = 0;
  double double_ = 0.0;
  std::string string_;
  Array array_;
  Object object_;
};

const char* TypeName(Value::Type type);

struct ParseOptions {
  // Accept Python's `NaN`, `Infinity`, `-Infinity` literals (as written by
  // Python's json module, e.g. in Hugging Face configs). Off = strict RFC 8259.
  bool allow_nan_infinity = false;
  // Nesting deeper than this is an error (protects the stack).
  int max_depth = 256;
};

absl::StatusOr<Value> Parse(std::string_view text, const ParseOptions& options = {});

struct WriteOptions {
  // 0: compact, one line. > 0: pretty-printed with this many spaces per level.
  int indent = 0;
  // Escape every non-ASCII code point as \uXXXX (surrogate pairs above the
  // BMP), like Python's ensure_ascii. Off: UTF-8 is written as is.
  bool ensure_ascii = false;
  // Non-finite doubles are written as NaN / Infinity / -Infinity when true,
  // else as null (strict JSON).
  bool allow_nan_infinity = false;
};

std::string Serialize(const Value& value, const WriteOptions& options = {});

}  // namespace hc::json

#endif  // HC_COMMON_JSON_H_
