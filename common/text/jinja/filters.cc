// jinja2's filters and tests that chat templates use (see builtins.h).
#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/text/jinja/builtins.h"
#include "common/text/jinja/pystr.h"

namespace hc::jinja {
namespace {

const std::set<absl::string_view>& Filters() {
  static const auto* kSet = new std::set<absl::string_view>{
      "abs",     "capitalize", "count",  "d",      "default",    "dictsort", "first",
      "float",   "indent",     "int",    "items",  "join",       "last",     "length",
      "list",    "lower",      "map",    "max",    "min",        "reject",   "rejectattr",
      "replace", "reverse",    "safe",   "select", "selectattr", "sort",     "string",
      "sum",     "title",      "tojson", "trim",   "unique",     "upper"};
  return *kSet;
}

const std::set<absl::string_view>& Tests() {
  static const auto* kSet = new std::set<absl::string_view>{
      "defined",  "undefined", "none",   "boolean", "false",       "true",
      "integer",  "float",     "number", "string",  "mapping",     "iterable",
      "sequence", "callable",  "odd",    "even",    "divisibleby", "eq",
      "equalto",  "==",        "ne",     "!=",      "lt",          "lessthan",
      "<",        "le",        "<=",     "gt",      "greaterthan", ">",
      "ge",       ">=",        "in",     "lower",   "upper",       "sameas"};
  return *kSet;
}

const Value kUndef;
const Value kFalse = Value::Bool(false);

absl::Status FilterError(absl::string_view name, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("filter ", name, ": ", what));
}

// `item.a.b` for attribute="a.b" (jinja2's make_attrgetter; digits index lists).
absl::StatusOr<Value> AttrPath(const Value& item, const Value& attribute) {
  if (!attribute.is_string()) return GetItem(item, attribute);
  Value v = item;
  const std::string& path = attribute.str();
  size_t b = 0;
  while (true) {
    const size_t dot = path.find('.', b);
    const std::string part = path.substr(b, dot == std::string::npos ? std::string::npos : dot - b);
    int64_t idx;
    absl::StatusOr<Value> next = absl::SimpleAtoi(part, &idx) ? GetItem(v, Value::Int(idx))
                                                              : GetItem(v, Value::String(part));
    if (!next.ok()) return next;
    v = *std::move(next);
    if (dot == std::string::npos) return v;
    b = dot + 1;
  }
}

// Sort key comparison for sort/dictsort/unique/min/max: strings compared
// case-insensitively unless case_sensitive.
absl::StatusOr<bool> Less(const Value& a, const Value& b, bool case_sensitive) {
  if (!case_sensitive && a.is_string() && b.is_string()) {
    absl::StatusOr<Text> x = CaseMap(a.AsText(), "lower");
    if (!x.ok()) return x.status();
    absl::StatusOr<Text> y = CaseMap(b.AsText(), "lower");
    if (!y.ok()) return y.status();
    return x->bytes < y->bytes;
  }
  return Compare("<", a, b);
}

absl::StatusOr<ValueList> SortValues(ValueList items, bool reverse, bool case_sensitive,
                                     const Value& attribute) {
  std::vector<std::pair<Value, Value>> keyed;
  for (Value& v : items) {
    Value key = v;
    if (!attribute.is_undefined() && !attribute.is_none()) {
      absl::StatusOr<Value> k = AttrPath(v, attribute);
      if (!k.ok()) return k.status();
      key = *std::move(k);
    }
    keyed.emplace_back(std::move(key), std::move(v));
  }
  absl::Status err;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    absl::StatusOr<bool> lt =
        reverse ? Less(y.first, x.first, case_sensitive) : Less(x.first, y.first, case_sensitive);
    if (!lt.ok()) {
      err = lt.status();
      return false;
    }
    return *lt;
  });
  if (!err.ok()) return err;
  ValueList out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return out;
}

absl::StatusOr<Value> SelectOrReject(absl::string_view name, const Value& seq, const CallArgs& a) {
  const bool by_attr = name == "selectattr" || name == "rejectattr";
  const bool keep_if = name == "select" || name == "selectattr";
  absl::StatusOr<ValueList> items = Iterate(seq);
  if (!items.ok()) return items.status();
  size_t next = 0;
  Value attribute;
  if (by_attr) {
    if (a.args.empty()) return FilterError(name, "missing attribute");
    attribute = a.args[next++];
  }
  std::string test;
  CallArgs test_args;
  if (next < a.args.size()) {
    if (!a.args[next].is_string()) return FilterError(name, "test name must be a string");
    test = a.args[next++].str();
    if (!IsKnownTest(test)) return FilterError(name, absl::StrCat("no test named '", test, "'"));
    test_args.args.assign(a.args.begin() + static_cast<std::ptrdiff_t>(next), a.args.end());
  }
  ValueList out;
  for (const Value& item : *items) {
    Value subject = item;
    if (by_attr) {
      absl::StatusOr<Value> v = AttrPath(item, attribute);
      if (!v.ok()) return v.status();
      subject = *std::move(v);
    }
    bool pass;
    if (test.empty()) {
      pass = subject.Truthy();
    } else {
      absl::StatusOr<bool> t = ApplyTest(test, subject, test_args);
      if (!t.ok()) return t.status();
      pass = *t;
    }
    if (pass == keep_if) out.push_back(item);
  }
  return Value::MakeList(std::move(out));
}

absl::StatusOr<Value> Map(const Value& seq, const CallArgs& a) {
  absl::StatusOr<ValueList> items = Iterate(seq);
  if (!items.ok()) return items.status();
  ValueList out;
  const Value& attribute = a.Get(99, "attribute", kUndef);
  if (!attribute.is_undefined()) {
    const Value& fallback = a.Get(99, "default", kUndef);
    for (const Value& item : *items) {
      absl::StatusOr<Value> v = AttrPath(item, attribute);
      if (!v.ok()) return v.status();
      out.push_back(v->is_undefined() && !fallback.is_undefined() ? fallback : *std::move(v));
    }
    return Value::MakeList(std::move(out));
  }
  if (a.args.empty() || !a.args[0].is_string()) return FilterError("map", "missing filter name");
  const std::string filter = a.args[0].str();
  if (!IsKnownFilter(filter))
    return FilterError("map", absl::StrCat("no filter named '", filter, "'"));
  CallArgs rest;
  rest.args.assign(a.args.begin() + 1, a.args.end());
  rest.kwargs = a.kwargs;
  for (const Value& item : *items) {
    absl::StatusOr<Value> v = ApplyFilter(filter, item, rest);
    if (!v.ok()) return v;
    out.push_back(*std::move(v));
  }
  return Value::MakeList(std::move(out));
}

absl::StatusOr<Value> Indent(const Value& v, const CallArgs& a) {
  const Value& width = a.Get(0, "width", kUndef);
  const bool first = a.Get(1, "first", kFalse).Truthy();
  const bool blank = a.Get(2, "blank", kFalse).Truthy();
  Text ind;
  if (width.is_string()) {
    ind = width.AsText();
  } else {
    ind.bytes.assign(
        static_cast<size_t>(width.is_undefined() ? 4 : std::max<int64_t>(0, width.AsInt())), ' ');
  }
  Text s = ToText(v);
  s.Append("\n");
  CallArgs none;
  absl::StatusOr<Value> lines_v = CallMethod(Value::FromText(s), "splitlines", none);
  if (!lines_v.ok()) return lines_v;
  const ValueList& lines = lines_v->AsList().items;
  Text out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out.Append("\n");
    const bool indent_line = i == 0 ? first : (blank || !lines[i].str().empty());
    if (indent_line) out.Append(ind);
    out.Append(lines[i].AsText());
  }
  return Value::FromText(std::move(out));
}

absl::StatusOr<Value> ToJsonFilter(const Value& v, const CallArgs& a) {
  JsonOptions o;
  o.ensure_ascii = a.Get(0, "ensure_ascii", kFalse).Truthy();
  const Value& indent = a.Get(1, "indent", kUndef);
  if (indent.is_int())
    o.indent = static_cast<int>(std::clamp<int64_t>(indent.AsInt(), 0, 64));
  else if (!indent.is_undefined() && !indent.is_none())
    return FilterError("tojson", "indent must be an int");
  const Value& seps = a.Get(2, "separators", kUndef);
  if (seps.is_list() && seps.AsList().items.size() == 2 && seps.AsList().items[0].is_string() &&
      seps.AsList().items[1].is_string()) {
    o.item_separator = seps.AsList().items[0].str();
    o.key_separator = seps.AsList().items[1].str();
  } else if (!seps.is_undefined() && !seps.is_none()) {
    return FilterError("tojson", "separators must be a pair of strings");
  }
  o.sort_keys = a.Get(3, "sort_keys", kFalse).Truthy();
  absl::StatusOr<Text> t = ToJson(v, o);
  if (!t.ok()) return t.status();
  return Value::FromText(*std::move(t));
}

absl::StatusOr<Value> ToInt(const Value& v, const CallArgs& a) {
  const Value fallback = a.Get(0, "default", Value::Int(0));
  if (v.is_int() || v.is_bool()) return Value::Int(v.AsInt());
  if (v.is_float()) {
    if (!std::isfinite(v.AsDouble())) return fallback;
    return Value::Int(static_cast<int64_t>(v.AsDouble()));
  }
  if (v.is_string()) {
    const StripSpan sp = PyStrip(v.str(), nullptr, true, true);
    std::string s = v.str().substr(sp.begin, sp.end - sp.begin);
    s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
    int64_t i;
    if (absl::SimpleAtoi(s, &i)) return Value::Int(i);
    double d;
    if (absl::SimpleAtod(s, &d) && std::isfinite(d)) return Value::Int(static_cast<int64_t>(d));
  }
  return fallback;
}

}  // namespace

bool IsKnownFilter(absl::string_view name) { return Filters().count(name) != 0; }
bool IsKnownTest(absl::string_view name) { return Tests().count(name) != 0; }
bool IsKnownGlobal(absl::string_view name) {
  return name == "raise_exception" || name == "strftime_now" || name == "namespace" ||
         name == "dict" || name == "range";
}

absl::StatusOr<Value> ApplyFilter(absl::string_view name, const Value& v, const CallArgs& a) {
  if (name == "default" || name == "d") {
    const Value& fallback = a.Get(0, "default_value", Value::String(""));
    const bool boolean = a.Get(1, "boolean", kFalse).Truthy();
    if (v.is_undefined() || (boolean && !v.Truthy())) return fallback;
    return v;
  }
  if (name == "length" || name == "count") {
    absl::StatusOr<int64_t> n = Length(v);
    if (!n.ok()) return n.status();
    return Value::Int(*n);
  }
  if (name == "string") return Value::FromText(ToText(v));
  if (name == "safe") return v;
  if (name == "trim") {
    const Text t = ToText(v);
    const Value& chars = a.Get(0, "chars", kUndef);
    const StripSpan sp = PyStrip(t.bytes, chars.is_string() ? &chars.str() : nullptr, true, true);
    return Value::FromText(t.Sub(sp.begin, sp.end));
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    absl::StatusOr<Text> t = CaseMap(ToText(v), name);
    if (!t.ok()) return t.status();
    return Value::FromText(*std::move(t));
  }
  if (name == "replace") {
    CallArgs m;
    m.args = {a.Get(0, "old", kUndef), a.Get(1, "new", kUndef)};
    const Value& count = a.Get(2, "count", kUndef);
    if (!count.is_undefined() && !count.is_none()) m.args.push_back(count);
    return CallMethod(Value::FromText(ToText(v)), "replace", m);
  }
  if (name == "tojson") return ToJsonFilter(v, a);
  if (name == "items") {
    if (v.is_undefined()) return Value::MakeList({});
    if (!v.is_dict())
      return FilterError(name, absl::StrCat("expected a mapping, got ", v.TypeName()));
    return CallMethod(v, "items", {});
  }
  if (name == "dictsort") {
    if (!v.is_dict()) return FilterError(name, "expected a mapping");
    const bool case_sensitive = a.Get(0, "case_sensitive", kFalse).Truthy();
    const Value& by = a.Get(1, "by", Value::String("key"));
    const bool reverse = a.Get(2, "reverse", kFalse).Truthy();
    absl::StatusOr<Value> items = CallMethod(v, "items", {});
    if (!items.ok()) return items;
    const Value index = Value::Int(by.is_string() && by.str() == "value" ? 1 : 0);
    absl::StatusOr<ValueList> sorted =
        SortValues(items->AsList().items, reverse, case_sensitive, index);
    if (!sorted.ok()) return sorted.status();
    return Value::MakeList(*std::move(sorted));
  }
  if (name == "join") {
    absl::StatusOr<ValueList> items = Iterate(v);
    if (!items.ok()) return items.status();
    const Value& sep = a.Get(0, "d", Value::String(""));
    const Value& attribute = a.Get(1, "attribute", kUndef);
    Text out;
    for (size_t i = 0; i < items->size(); ++i) {
      if (i > 0) out.Append(ToText(sep));
      Value item = (*items)[i];
      if (!attribute.is_undefined() && !attribute.is_none()) {
        absl::StatusOr<Value> x = AttrPath(item, attribute);
        if (!x.ok()) return x;
        item = *std::move(x);
      }
      out.Append(ToText(item));
    }
    return Value::FromText(std::move(out));
  }
  if (name == "list") {
    absl::StatusOr<ValueList> items = Iterate(v);
    if (!items.ok()) return items.status();
    return Value::MakeList(*std::move(items));
  }
  if (name == "first" || name == "last") {
    absl::StatusOr<ValueList> items = Iterate(v);
    if (!items.ok()) return items.status();
    if (items->empty()) return Value::Undefined("No first item, sequence was empty.");
    return name == "first" ? items->front() : items->back();
  }
  if (name == "reverse") {
    if (v.is_string()) {
      const Value minus_one = Value::Int(-1);
      return GetSlice(v, nullptr, nullptr, &minus_one);
    }
    absl::StatusOr<ValueList> items = Iterate(v);
    if (!items.ok()) return items.status();
    std::reverse(items->begin(), items->end());
    return Value::MakeList(*std::move(items));
  }
  if (name == "sort" || name == "unique" || name == "min" || name == "max") {
    absl::StatusOr<ValueList> items = Iterate(v);
    if (!items.ok()) return items.status();
    const bool reverse = name == "sort" && a.Get(0, "reverse", kFalse).Truthy();
    const bool case_sensitive = a.Get(name == "sort" ? 1 : 0, "case_sensitive", kFalse).Truthy();
    const Value& attribute = a.Get(name == "sort" ? 2 : 1, "attribute", kUndef);
    if (name == "unique") {
      ValueList out;
      std::vector<Value> seen;
      for (const Value& item : *items) {
        Value key = item;
        if (!attribute.is_undefined()) {
          absl::StatusOr<Value> k = AttrPath(item, attribute);
          if (!k.ok()) return k;
          key = *std::move(k);
        }
        if (!case_sensitive && key.is_string()) {
          absl::StatusOr<Text> l = CaseMap(key.AsText(), "lower");
          if (!l.ok()) return l.status();
          key = Value::FromText(*std::move(l));
        }
        if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return s.Equals(key); }))
          continue;
        seen.push_back(key);
        out.push_back(item);
      }
      return Value::MakeList(std::move(out));
    }
    absl::StatusOr<ValueList> sorted =
        SortValues(*std::move(items), reverse, case_sensitive, attribute);
    if (!sorted.ok()) return sorted.status();
    if (name == "sort") return Value::MakeList(*std::move(sorted));
    if (sorted->empty()) return Value::Undefined("No aggregated item, sequence was empty.");
    return name == "min" ? sorted->front() : sorted->back();
  }
  if (name == "map") return Map(v, a);
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    return SelectOrReject(name, v, a);
  }
  if (name == "sum") {
    absl::StatusOr<ValueList> items = Iterate(v);
    if (!items.ok()) return items.status();
    const Value& attribute = a.Get(0, "attribute", kUndef);
    Value total = a.Get(1, "start", Value::Int(0));
    for (const Value& item : *items) {
      Value x = item;
      if (!attribute.is_undefined()) {
        absl::StatusOr<Value> k = AttrPath(item, attribute);
        if (!k.ok()) return k;
        x = *std::move(k);
      }
      absl::StatusOr<Value> s = BinaryOp("+", total, x);
      if (!s.ok()) return s;
      total = *std::move(s);
    }
    return total;
  }
  if (name == "abs") {
    if (v.is_float()) return Value::Float(std::fabs(v.AsDouble()));
    if (v.is_int() || v.is_bool()) return v.AsInt() < 0 ? Negate(v) : Value::Int(v.AsInt());
    return FilterError(name, absl::StrCat("bad operand type for abs(): '", v.TypeName(), "'"));
  }
  if (name == "int") return ToInt(v, a);
  if (name == "float") {
    const Value fallback = a.Get(0, "default", Value::Float(0));
    if (v.is_number()) return Value::Float(v.AsDouble());
    double d;
    if (v.is_string() && absl::SimpleAtod(v.str(), &d)) return Value::Float(d);
    return fallback;
  }
  if (name == "indent") return Indent(v, a);
  return FilterError(name, "unknown filter");
}

absl::StatusOr<bool> ApplyTest(absl::string_view name, const Value& v, const CallArgs& a) {
  const Value& arg = a.Get(0, "", kUndef);
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.is_bool();
  if (name == "false") return v.is_bool() && !v.AsBool();
  if (name == "true") return v.is_bool() && v.AsBool();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
  if (name == "sequence") return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
  if (name == "callable") return v.is_callable();
  if (name == "odd" || name == "even" || name == "divisibleby") {
    if (!v.is_int() && !v.is_bool()) {
      return absl::InvalidArgumentError(absl::StrCat("test ", name, ": expected an int"));
    }
    const int64_t d = name == "divisibleby" ? (arg.is_int() ? arg.AsInt() : 0) : 2;
    if (d == 0) return absl::InvalidArgumentError("integer division or modulo by zero");
    const int64_t m = ((v.AsInt() % d) + d) % d;
    return name == "odd" ? m == 1 : m == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==") return Compare("==", v, arg);
  if (name == "ne" || name == "!=") return Compare("!=", v, arg);
  if (name == "lt" || name == "lessthan" || name == "<") return Compare("<", v, arg);
  if (name == "le" || name == "<=") return Compare("<=", v, arg);
  if (name == "gt" || name == "greaterthan" || name == ">") return Compare(">", v, arg);
  if (name == "ge" || name == ">=") return Compare(">=", v, arg);
  if (name == "in") return Compare("in", v, arg);
  if (name == "lower" || name == "upper") {
    if (!v.is_string()) return false;
    absl::StatusOr<Text> m = CaseMap(v.AsText(), name);
    if (!m.ok()) return m.status();
    return m->bytes == v.str();
  }
  if (name == "sameas") {
    if (v.kind() != arg.kind()) return false;
    if (v.is_none() || v.is_bool()) return v.Equals(arg);
    return v.Equals(arg) && (v.is_int() || v.is_float());
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown test '", name, "'"));
}

}  // namespace hc::jinja
