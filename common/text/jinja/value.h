// The values a chat template computes with, with Python's semantics as jinja2
// gives them: None, bool, int, float, str, list/tuple, dict (insertion
// ordered), namespace (the only mutable object: transformers renders in an
// ImmutableSandboxedEnvironment), callables, and jinja2's default Undefined.
//
// Every string carries, per byte, whether it came from the caller's data
// (messages, tools, documents) or from the template itself (its literals,
// bos_token and the like). String operations keep the marks, so the rendered
// text says which bytes the template wrote: the only places where special
// tokens are recognised (a message saying "<|end_of_text|>" stays text).
//
// Thread-safety: a Value is an immutable handle except for namespaces, which
// belong to one rendering.
#ifndef HC_COMMON_TEXT_JINJA_VALUE_H_
#define HC_COMMON_TEXT_JINJA_VALUE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/json.h"

namespace hc::jinja {

// Text plus its provenance: data_mask is empty when no byte came from data,
// else it has one byte per text byte, 1 where the byte came from data.
struct Text {
  std::string bytes;
  std::string data_mask;

  bool has_data() const { return !data_mask.empty(); }
  void Append(const Text& other);
  void Append(std::string_view template_bytes);
  // Bytes [begin, end).
  Text Sub(size_t begin, size_t end) const;
  // Marks every byte as data.
  void MarkAllData() { data_mask.assign(bytes.size(), 1); }
};

struct MacroDef;  // ast.h

class Value;
using ValueList = std::vector<Value>;
using ValuePairs = std::vector<std::pair<Value, Value>>;

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,
    kCallable
  };
  struct List {
    ValueList items;
    bool is_tuple = false;
  };
  struct Dict {
    ValuePairs items;
  };
  struct Namespace {
    std::vector<std::pair<std::string, Value>> attrs;
  };
  struct Callable {
    enum class Type : uint8_t { kGlobal, kMacro, kMethod };
    Type type = Type::kGlobal;
    std::string name;                   // global or method name
    const MacroDef* macro = nullptr;    // kMacro
    std::shared_ptr<const Value> self;  // kMethod: the object
  };

  Value() = default;  // Undefined
  static Value Undefined(std::string hint = "");
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double d);
  static Value String(std::string s);  // template text
  static Value FromText(Text t);
  static Value MakeList(ValueList items, bool is_tuple = false);
  static Value MakeDict(ValuePairs items);
  static Value MakeNamespace(std::vector<std::pair<std::string, Value>> attrs);
  static Value MakeCallable(Callable c);
  // JSON → value; strings are marked as data when `from_data`.
  static Value FromJson(const json::Value& v, bool from_data);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  // Python numbers: bool is an int.
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_callable() const { return kind_ == Kind::kCallable; }

  bool AsBool() const { return b_; }
  int64_t AsInt() const { return is_bool() ? (b_ ? 1 : 0) : i_; }  // REQUIRES: int or bool
  double AsDouble() const { return is_float() ? f_ : static_cast<double>(AsInt()); }
  const Text& AsText() const { return *text_; }  // REQUIRES: string (or undefined: its hint)
  const std::string& str() const { return text_->bytes; }
  const List& AsList() const { return *list_; }
  const Dict& AsDict() const { return *dict_; }
  Namespace& AsNamespace() const { return *ns_; }
  const Callable& AsCallable() const { return *fn_; }
  const std::string& undefined_hint() const;

  // Dict member by string key, nullptr when absent (REQUIRES: dict).
  const Value* FindKey(absl::string_view key) const;
  // Namespace attribute, nullptr when absent (REQUIRES: namespace).
  Value* FindAttr(absl::string_view name) const;

  // Python truthiness (Undefined is false).
  bool Truthy() const;
  // Python ==.
  bool Equals(const Value& other) const;
  // jinja2's type name for messages: "str", "int", "dict object", ...
  std::string TypeName() const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<const Text> text_;  // string, or an Undefined's hint
  std::shared_ptr<const List> list_;
  std::shared_ptr<const Dict> dict_;
  std::shared_ptr<Namespace> ns_;
  std::shared_ptr<const Callable> fn_;
};

// Python's str(value) as jinja2 prints `{{ value }}` (Undefined prints "").
Text ToText(const Value& v);
// Python's repr(value), the form list and dict members print in.
std::string Repr(const Value& v);

struct JsonOptions {
  int indent = -1;  // < 0: one line
  bool ensure_ascii = false;
  bool sort_keys = false;
  std::string item_separator;  // default: ", " one line, "," with indent
  std::string key_separator;   // default: ": "
};
// json.dumps(value, ...) as transformers' `tojson` filter calls it.
// INVALID_ARGUMENT for values JSON cannot hold (Undefined, callables).
absl::StatusOr<Text> ToJson(const Value& v, const JsonOptions& options);

}  // namespace hc::jinja

#endif  // HC_COMMON_TEXT_JINJA_VALUE_H_
