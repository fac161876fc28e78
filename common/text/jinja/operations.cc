// Python operators, attribute/item access and iteration (see builtins.h).
#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/text/jinja/builtins.h"
#include "common/text/jinja/pystr.h"

namespace hc::jinja {
namespace {

absl::Status UndefinedError(const Value& v) {
  const std::string& hint = v.undefined_hint();
  return absl::InvalidArgumentError(hint.empty() ? "value is undefined" : hint);
}

absl::Status TypeError(std::string msg) { return absl::InvalidArgumentError(std::move(msg)); }

// Python index normalisation; false when out of range.
bool NormalizeIndex(int64_t* i, size_t size) {
  if (*i < 0) *i += static_cast<int64_t>(size);
  return *i >= 0 && *i < static_cast<int64_t>(size);
}

Value Char(const Value& s, size_t cp_index, const std::vector<size_t>& off) {
  return Value::FromText(s.AsText().Sub(off[cp_index], off[cp_index + 1]));
}

absl::StatusOr<Value> CheckedInt(bool overflow, int64_t v) {
  if (overflow) return TypeError("integer overflow");
  return Value::Int(v);
}

int CompareNumbers(const Value& a, const Value& b) {
  if (a.is_float() || b.is_float()) {
    const double x = a.AsDouble();
    const double y = b.AsDouble();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  const int64_t x = a.AsInt();
  const int64_t y = b.AsInt();
  return x < y ? -1 : x > y ? 1 : 0;
}

// Python ordering for < <= > >=: numbers, strings, lists/tuples of the same
// kind; TypeError otherwise.
absl::StatusOr<int> Order(const Value& a, const Value& b, absl::string_view op) {
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  if (a.is_number() && b.is_number()) return CompareNumbers(a, b);
  if (a.is_string() && b.is_string()) {
    const int c = a.str().compare(b.str());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list() && a.AsList().is_tuple == b.AsList().is_tuple) {
    const auto& x = a.AsList().items;
    const auto& y = b.AsList().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (x[i].Equals(y[i])) continue;
      return Order(x[i], y[i], op);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  return TypeError(absl::StrCat("'", op, "' not supported between instances of '", a.TypeName(),
                                "' and '", b.TypeName(), "'"));
}

}  // namespace

const Value& CallArgs::Get(size_t index, absl::string_view name, const Value& fallback) const {
  if (index < args.size()) return args[index];
  for (const auto& [k, v] : kwargs) {
    if (k == name) return v;
  }
  return fallback;
}

absl::StatusOr<Value> GetAttr(const Value& obj, absl::string_view name) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (HasMethod(obj, name)) {
    Value::Callable c;
    c.type = Value::Callable::Type::kMethod;
    c.name = std::string(name);
    c.self = std::make_shared<const Value>(obj);
    return Value::MakeCallable(std::move(c));
  }
  if (obj.is_dict()) {
    if (const Value* v = obj.FindKey(name)) return *v;
    return Value::Undefined(absl::StrCat("'dict object' has no attribute '", name, "'"));
  }
  if (obj.is_namespace()) {
    if (const Value* v = obj.FindAttr(name)) return *v;
    return Value::Undefined(absl::StrCat("'Namespace' has no attribute '", name, "'"));
  }
  return Value::Undefined(
      absl::StrCat("'", obj.TypeName(), " object' has no attribute '", name, "'"));
}

absl::StatusOr<Value> GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (obj.is_dict()) {
    for (const auto& [k, v] : obj.AsDict().items) {
      if (k.Equals(key)) return v;
    }
  } else if (obj.is_list() && (key.is_int() || key.is_bool())) {
    int64_t i = key.AsInt();
    if (NormalizeIndex(&i, obj.AsList().items.size())) return obj.AsList().items[i];
  } else if (obj.is_string() && (key.is_int() || key.is_bool())) {
    const std::vector<size_t> off = CodePointOffsets(obj.str());
    int64_t i = key.AsInt();
    if (NormalizeIndex(&i, off.size() - 1)) return Char(obj, static_cast<size_t>(i), off);
  } else if (obj.is_namespace() && key.is_string()) {
    if (const Value* v = obj.FindAttr(key.str())) return *v;
  }
  // jinja2 falls back to the attribute of that name (d['items'] is the method).
  if (key.is_string() && HasMethod(obj, key.str())) return GetAttr(obj, key.str());
  return Value::Undefined(absl::StrCat("'", obj.TypeName(), " object' has no element ",
                                       key.is_string() ? StrRepr(key.str()) : Repr(key)));
}

absl::StatusOr<Value> GetSlice(const Value& obj, const Value* start_v, const Value* stop_v,
                               const Value* step_v) {
  if (obj.is_undefined()) return UndefinedError(obj);
  auto as_index = [](const Value* v, int64_t* out) -> absl::Status {
    if (v == nullptr || v->is_none()) return absl::OkStatus();
    if (!v->is_int() && !v->is_bool()) {
      return TypeError("slice indices must be integers or None");
    }
    *out = v->AsInt();
    return absl::OkStatus();
  };
  int64_t step = 1;
  if (absl::Status s = as_index(step_v, &step); !s.ok()) return s;
  if (step == 0) return TypeError("slice step cannot be zero");
  const bool is_str = obj.is_string();
  if (!is_str && !obj.is_list()) {
    return TypeError(absl::StrCat("'", obj.TypeName(), "' object is not subscriptable"));
  }
  std::vector<size_t> off;
  int64_t len;
  if (is_str) {
    off = CodePointOffsets(obj.str());
    len = static_cast<int64_t>(off.size() - 1);
  } else {
    len = static_cast<int64_t>(obj.AsList().items.size());
  }
  int64_t start = step > 0 ? 0 : len - 1;
  int64_t stop = step > 0 ? len : -1;
  auto clamp = [&](const Value* v, int64_t* out) -> absl::Status {
    if (v == nullptr || v->is_none()) return absl::OkStatus();
    int64_t i = 0;
    if (absl::Status s = as_index(v, &i); !s.ok()) return s;
    if (i < 0) i += len;
    if (step > 0) {
      *out = std::clamp<int64_t>(i, 0, len);
    } else {
      *out = std::clamp<int64_t>(i, -1, len - 1);
    }
    return absl::OkStatus();
  };
  if (absl::Status s = clamp(start_v, &start); !s.ok()) return s;
  if (absl::Status s = clamp(stop_v, &stop); !s.ok()) return s;
  std::vector<int64_t> picks;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) picks.push_back(i);
  if (is_str) {
    if (step == 1) {
      return Value::FromText(
          picks.empty() ? Text{} : obj.AsText().Sub(off[picks.front()], off[picks.back() + 1]));
    }
    Text t;
    for (const int64_t i : picks) t.Append(obj.AsText().Sub(off[i], off[i + 1]));
    return Value::FromText(std::move(t));
  }
  ValueList items;
  for (const int64_t i : picks) items.push_back(obj.AsList().items[i]);
  return Value::MakeList(std::move(items), obj.AsList().is_tuple);
}

absl::StatusOr<Value> Negate(const Value& v) {
  if (v.is_float()) return Value::Float(-v.AsDouble());
  if (v.is_int() || v.is_bool()) {
    if (v.AsInt() == std::numeric_limits<int64_t>::min()) return TypeError("integer overflow");
    return Value::Int(-v.AsInt());
  }
  if (v.is_undefined()) return UndefinedError(v);
  return TypeError(absl::StrCat("bad operand type for unary -: '", v.TypeName(), "'"));
}

absl::StatusOr<Value> BinaryOp(absl::string_view op, const Value& a, const Value& b) {
  if (op == "~") {
    Text t = ToText(a);
    t.Append(ToText(b));
    return Value::FromText(std::move(t));
  }
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  const auto unsupported = [&]() {
    return TypeError(absl::StrCat("unsupported operand type(s) for ", op, ": '", a.TypeName(),
                                  "' and '", b.TypeName(), "'"));
  };
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      Text t = a.AsText();
      t.Append(b.AsText());
      return Value::FromText(std::move(t));
    }
    if (a.is_list() && b.is_list() && a.AsList().is_tuple == b.AsList().is_tuple) {
      ValueList items = a.AsList().items;
      items.insert(items.end(), b.AsList().items.begin(), b.AsList().items.end());
      return Value::MakeList(std::move(items), a.AsList().is_tuple);
    }
    if (a.is_string() || b.is_string()) {
      return TypeError(a.is_string() ? absl::StrCat("can only concatenate str (not \"",
                                                    b.TypeName(), "\") to str")
                                     : std::string(unsupported().message()));
    }
  }
  if (op == "*" && (a.is_string() || a.is_list() || b.is_string() || b.is_list())) {
    const Value& seq = a.is_string() || a.is_list() ? a : b;
    const Value& n = a.is_string() || a.is_list() ? b : a;
    if (!n.is_int() && !n.is_bool()) return unsupported();
    const int64_t times = std::max<int64_t>(0, n.AsInt());
    if (seq.is_string()) {
      if (times > 0 && seq.str().size() * static_cast<uint64_t>(times) > (64u << 20)) {
        return TypeError("repeated string too long");
      }
      Text t;
      for (int64_t i = 0; i < times; ++i) t.Append(seq.AsText());
      return Value::FromText(std::move(t));
    }
    if (times > 0 && seq.AsList().items.size() * static_cast<uint64_t>(times) > (1u << 20)) {
      return TypeError("repeated list too long");
    }
    ValueList items;
    for (int64_t i = 0; i < times; ++i) {
      items.insert(items.end(), seq.AsList().items.begin(), seq.AsList().items.end());
    }
    return Value::MakeList(std::move(items), seq.AsList().is_tuple);
  }
  if (op == "%" && a.is_string())
    return TypeError("printf-style string formatting is not supported");
  if (!a.is_number() || !b.is_number()) return unsupported();
  const bool floats = a.is_float() || b.is_float();
  if (op == "/") {
    if (b.AsDouble() == 0) return TypeError("division by zero");
    return Value::Float(a.AsDouble() / b.AsDouble());
  }
  if (op == "**") {
    if (!floats && b.AsInt() >= 0) {
      int64_t r = 1;
      for (int64_t i = 0; i < b.AsInt(); ++i) {
        if (__builtin_mul_overflow(r, a.AsInt(), &r)) return TypeError("integer overflow");
        if (r == 0 || r == 1) break;
      }
      return Value::Int(r);
    }
    return Value::Float(std::pow(a.AsDouble(), b.AsDouble()));
  }
  if (floats) {
    const double x = a.AsDouble();
    const double y = b.AsDouble();
    if (op == "+") return Value::Float(x + y);
    if (op == "-") return Value::Float(x - y);
    if (op == "*") return Value::Float(x * y);
    if (y == 0) return TypeError("float division by zero");
    if (op == "//") return Value::Float(std::floor(x / y));
    if (op == "%") {
      double m = std::fmod(x, y);
      if (m != 0 && ((m < 0) != (y < 0))) m += y;
      return Value::Float(m);
    }
    return unsupported();
  }
  const int64_t x = a.AsInt();
  const int64_t y = b.AsInt();
  int64_t r = 0;
  bool overflow = false;
  if (op == "+" || op == "-" || op == "*") {
    overflow = op == "+"   ? __builtin_add_overflow(x, y, &r)
               : op == "-" ? __builtin_sub_overflow(x, y, &r)
                           : __builtin_mul_overflow(x, y, &r);
    return CheckedInt(overflow, r);
  }
  if (y == 0) return TypeError("integer division or modulo by zero");
  if (op == "//" || op == "%") {
    int64_t q = x / y;
    int64_t m = x % y;
    if (m != 0 && ((m < 0) != (y < 0))) {
      --q;
      m += y;
    }
    return Value::Int(op == "//" ? q : m);
  }
  return unsupported();
}

absl::StatusOr<bool> Compare(absl::string_view op, const Value& a, const Value& b) {
  if (op == "==") return a.Equals(b);
  if (op == "!=") return !a.Equals(b);
  if (op == "in" || op == "not in") {
    bool found = false;
    if (b.is_string()) {
      if (!a.is_string()) {
        return TypeError(
            absl::StrCat("'in <string>' requires string as left operand, not ", a.TypeName()));
      }
      found = b.str().find(a.str()) != std::string::npos;
    } else if (b.is_list()) {
      for (const Value& item : b.AsList().items) found = found || item.Equals(a);
    } else if (b.is_dict()) {
      for (const auto& [k, v] : b.AsDict().items) found = found || k.Equals(a);
    } else if (b.is_namespace() && a.is_string()) {
      found = b.FindAttr(a.str()) != nullptr;
    } else if (!b.is_undefined()) {
      return TypeError(absl::StrCat("argument of type '", b.TypeName(), "' is not iterable"));
    }
    return op == "in" ? found : !found;
  }
  absl::StatusOr<int> c = Order(a, b, op);
  if (!c.ok()) return c.status();
  if (op == "<") return *c < 0;
  if (op == "<=") return *c <= 0;
  if (op == ">") return *c > 0;
  return *c >= 0;
}

absl::StatusOr<ValueList> Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return ValueList{};
    case Value::Kind::kList:
      return v.AsList().items;
    case Value::Kind::kDict: {
      ValueList keys;
      for (const auto& [k, item] : v.AsDict().items) keys.push_back(k);
      return keys;
    }
    case Value::Kind::kString: {
      const std::vector<size_t> off = CodePointOffsets(v.str());
      ValueList chars;
      for (size_t i = 0; i + 1 < off.size(); ++i) chars.push_back(Char(v, i, off));
      return chars;
    }
    default:
      return TypeError(absl::StrCat("'", v.TypeName(), "' object is not iterable"));
  }
}

absl::StatusOr<int64_t> Length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      return static_cast<int64_t>(CodePointCount(v.str()));
    case Value::Kind::kList:
      return static_cast<int64_t>(v.AsList().items.size());
    case Value::Kind::kDict:
      return static_cast<int64_t>(v.AsDict().items.size());
    default:
      return TypeError(absl::StrCat("object of type '", v.TypeName(), "' has no len()"));
  }
}

}  // namespace hc::jinja
