// Python str, dict and list methods templates call (see builtins.h).
#include <cctype>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/text/jinja/builtins.h"
#include "common/text/jinja/pystr.h"

namespace hc::jinja {
namespace {

const std::set<absl::string_view>& StrMethods() {
  static const auto* kSet = new std::set<absl::string_view>{
      "strip",   "lstrip", "rstrip",     "split",   "rsplit",     "startswith", "endswith",
      "replace", "upper",  "lower",      "title",   "capitalize", "find",       "rfind",
      "count",   "join",   "splitlines", "isdigit", "isalpha",    "isalnum",    "isspace"};
  return *kSet;
}
const std::set<absl::string_view>& DictMethods() {
  static const auto* kSet = new std::set<absl::string_view>{"items", "keys", "values", "get"};
  return *kSet;
}
const std::set<absl::string_view>& ListMethods() {
  static const auto* kSet = new std::set<absl::string_view>{"index", "count"};
  return *kSet;
}

absl::Status ArgError(absl::string_view name, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(name, "(): ", what));
}

absl::StatusOr<const Value*> StrArg(const CallArgs& a, size_t i, absl::string_view name,
                                    bool optional) {
  static const Value kMissing;
  const Value& v = a.Get(i, "", kMissing);
  if (v.is_undefined() || v.is_none()) {
    if (optional) return nullptr;
    return ArgError(name, "missing argument");
  }
  if (!v.is_string())
    return ArgError(name, absl::StrCat("argument must be str, not ", v.TypeName()));
  return &v;
}

int64_t IntArg(const CallArgs& a, size_t i, int64_t fallback) {
  static const Value kMissing;
  const Value& v = a.Get(i, "", kMissing);
  return v.is_int() || v.is_bool() ? v.AsInt() : fallback;
}

// Byte spans of s split on `sep` (Python's str.split(sep, maxsplit)).
std::vector<StripSpan> SplitOn(absl::string_view s, absl::string_view sep, int64_t maxsplit,
                               bool from_right) {
  std::vector<StripSpan> out;
  if (!from_right) {
    size_t b = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      const size_t at = s.find(sep, b);
      if (at == absl::string_view::npos) break;
      out.push_back({b, at});
      b = at + sep.size();
    }
    out.push_back({b, s.size()});
    return out;
  }
  size_t e = s.size();
  std::vector<StripSpan> rev;
  while (maxsplit < 0 || static_cast<int64_t>(rev.size()) < maxsplit) {
    if (e < sep.size()) break;
    const size_t at = s.rfind(sep, e - sep.size());
    if (at == absl::string_view::npos) break;
    rev.push_back({at + sep.size(), e});
    e = at;
  }
  rev.push_back({0, e});
  return {rev.rbegin(), rev.rend()};
}

Value SpansToList(const Text& t, const std::vector<StripSpan>& spans) {
  ValueList items;
  for (const StripSpan& sp : spans) items.push_back(Value::FromText(t.Sub(sp.begin, sp.end)));
  return Value::MakeList(std::move(items));
}

absl::StatusOr<Value> StrMethod(const Value& self, absl::string_view name, const CallArgs& a) {
  const Text& t = self.AsText();
  const std::string& s = t.bytes;
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    absl::StatusOr<const Value*> chars = StrArg(a, 0, name, true);
    if (!chars.ok()) return chars.status();
    const StripSpan sp =
        PyStrip(s, *chars ? &(*chars)->str() : nullptr, name != "rstrip", name != "lstrip");
    return Value::FromText(t.Sub(sp.begin, sp.end));
  }
  if (name == "split" || name == "rsplit") {
    absl::StatusOr<const Value*> sep = StrArg(a, 0, name, true);
    if (!sep.ok()) return sep.status();
    const int64_t maxsplit = IntArg(a, 1, -1);
    if (*sep == nullptr) {
      if (name == "rsplit" && maxsplit >= 0)
        return ArgError(name, "rsplit(None, n) is not supported");
      return SpansToList(t, PySplitWhitespace(s, maxsplit));
    }
    if ((*sep)->str().empty()) return ArgError(name, "empty separator");
    return SpansToList(t, SplitOn(s, (*sep)->str(), maxsplit, name == "rsplit"));
  }
  if (name == "startswith" || name == "endswith") {
    static const Value kMissing;
    const Value& arg = a.Get(0, "", kMissing);
    std::vector<const Value*> options;
    if (arg.is_list() && arg.AsList().is_tuple) {
      for (const Value& v : arg.AsList().items) options.push_back(&v);
    } else {
      options.push_back(&arg);
    }
    for (const Value* o : options) {
      if (!o->is_string()) {
        return ArgError(
            name, absl::StrCat("first arg must be str or a tuple of str, not ", o->TypeName()));
      }
      const std::string& p = o->str();
      if (p.size() <= s.size() &&
          (name == "startswith" ? s.compare(0, p.size(), p) == 0
                                : s.compare(s.size() - p.size(), p.size(), p) == 0)) {
        return Value::Bool(true);
      }
    }
    return Value::Bool(false);
  }
  if (name == "replace") {
    absl::StatusOr<const Value*> old = StrArg(a, 0, name, false);
    if (!old.ok()) return old.status();
    absl::StatusOr<const Value*> repl = StrArg(a, 1, name, false);
    if (!repl.ok()) return repl.status();
    const int64_t count = IntArg(a, 2, -1);
    const std::string& o = (*old)->str();
    Text out;
    size_t b = 0;
    int64_t n = 0;
    if (o.empty()) {
      // Python inserts the replacement before every code point and at the end.
      const std::vector<size_t> off = CodePointOffsets(s);
      for (size_t i = 0; i < off.size(); ++i) {
        if (count >= 0 && n >= count) {
          out.Append(t.Sub(off[i], s.size()));
          return Value::FromText(std::move(out));
        }
        out.Append((*repl)->AsText());
        ++n;
        if (i + 1 < off.size()) out.Append(t.Sub(off[i], off[i + 1]));
      }
      return Value::FromText(std::move(out));
    }
    while (count < 0 || n < count) {
      const size_t at = s.find(o, b);
      if (at == std::string::npos) break;
      out.Append(t.Sub(b, at));
      out.Append((*repl)->AsText());
      b = at + o.size();
      ++n;
    }
    out.Append(t.Sub(b, s.size()));
    return Value::FromText(std::move(out));
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    absl::StatusOr<Text> r = CaseMap(t, name);
    if (!r.ok()) return r.status();
    return Value::FromText(*std::move(r));
  }
  if (name == "find" || name == "rfind" || name == "count") {
    absl::StatusOr<const Value*> sub = StrArg(a, 0, name, false);
    if (!sub.ok()) return sub.status();
    const std::string& x = (*sub)->str();
    if (name == "count") {
      if (x.empty()) return Value::Int(static_cast<int64_t>(CodePointCount(s)) + 1);
      int64_t n = 0;
      for (size_t at = s.find(x); at != std::string::npos; at = s.find(x, at + x.size())) ++n;
      return Value::Int(n);
    }
    const size_t at = name == "find" ? s.find(x) : s.rfind(x);
    if (at == std::string::npos) return Value::Int(-1);
    return Value::Int(static_cast<int64_t>(CodePointCount(std::string_view(s).substr(0, at))));
  }
  if (name == "join") {
    static const Value kMissing;
    absl::StatusOr<ValueList> items = Iterate(a.Get(0, "", kMissing));
    if (!items.ok()) return items.status();
    Text out;
    for (size_t i = 0; i < items->size(); ++i) {
      if (!(*items)[i].is_string()) {
        return ArgError(name, absl::StrCat("sequence item ", i, ": expected str instance, ",
                                           (*items)[i].TypeName(), " found"));
      }
      if (i > 0) out.Append(t);
      out.Append((*items)[i].AsText());
    }
    return Value::FromText(std::move(out));
  }
  if (name == "splitlines") {
    std::vector<StripSpan> spans;
    size_t b = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\n' || s[i] == '\r') {
        spans.push_back({b, i});
        if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
        b = i + 1;
      } else if (static_cast<unsigned char>(s[i]) >= 0x80 || s[i] == '\v' || s[i] == '\f' ||
                 (s[i] >= 0x1c && s[i] <= 0x1e)) {
        return ArgError(name, "text with rare line separators is not supported");
      }
    }
    if (b < s.size()) spans.push_back({b, s.size()});
    return SpansToList(t, spans);
  }
  // isdigit / isalpha / isalnum / isspace: ASCII only (else an error).
  if (name == "isspace") {
    const StripSpan sp = PyStrip(s, nullptr, true, false);
    return Value::Bool(!s.empty() && sp.begin == s.size());
  }
  if (!IsAscii(s)) return ArgError(name, "non-ASCII text is not supported");
  if (s.empty()) return Value::Bool(false);
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    const bool ok = name == "isdigit"   ? std::isdigit(u) != 0
                    : name == "isalpha" ? std::isalpha(u) != 0
                                        : std::isalnum(u) != 0;
    if (!ok) return Value::Bool(false);
  }
  return Value::Bool(true);
}

absl::StatusOr<Value> DictMethod(const Value& self, absl::string_view name, const CallArgs& a) {
  const auto& items = self.AsDict().items;
  if (name == "get") {
    static const Value kNone = Value::None();
    static const Value kMissing;
    const Value& key = a.Get(0, "", kMissing);
    for (const auto& [k, v] : items) {
      if (k.Equals(key)) return v;
    }
    return a.Get(1, "", kNone);
  }
  ValueList out;
  for (const auto& [k, v] : items) {
    if (name == "keys") {
      out.push_back(k);
    } else if (name == "values") {
      out.push_back(v);
    } else {
      out.push_back(Value::MakeList({k, v}, /*is_tuple=*/true));
    }
  }
  return Value::MakeList(std::move(out));
}

absl::StatusOr<Value> ListMethod(const Value& self, absl::string_view name, const CallArgs& a) {
  static const Value kMissing;
  const Value& x = a.Get(0, "", kMissing);
  const auto& items = self.AsList().items;
  int64_t n = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].Equals(x)) continue;
    if (name == "index") return Value::Int(static_cast<int64_t>(i));
    ++n;
  }
  if (name == "index") return absl::InvalidArgumentError("list.index(x): x not in list");
  return Value::Int(n);
}

}  // namespace

bool IsKnownMethod(absl::string_view name) {
  return StrMethods().count(name) != 0 || DictMethods().count(name) != 0 ||
         ListMethods().count(name) != 0;
}

bool HasMethod(const Value& self, absl::string_view name) {
  if (self.is_string()) return StrMethods().count(name) != 0;
  if (self.is_dict()) return DictMethods().count(name) != 0;
  if (self.is_list()) return ListMethods().count(name) != 0;
  return false;
}

absl::StatusOr<Value> CallMethod(const Value& self, absl::string_view name, const CallArgs& args) {
  if (self.is_string() && StrMethods().count(name) != 0) return StrMethod(self, name, args);
  if (self.is_dict() && DictMethods().count(name) != 0) return DictMethod(self, name, args);
  if (self.is_list() && ListMethods().count(name) != 0) return ListMethod(self, name, args);
  return absl::InvalidArgumentError(
      absl::StrCat("'", self.TypeName(), "' object has no method '", name, "'"));
}

absl::StatusOr<Text> CaseMap(const Text& t, absl::string_view how) {
  if (!IsAscii(t.bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(how, "(): non-ASCII text is not supported by this template engine"));
  }
  Text out = t;
  std::string& s = out.bytes;
  if (how == "upper" || how == "lower") {
    for (char& c : s) {
      c = static_cast<char>(how == "upper" ? std::toupper(static_cast<unsigned char>(c))
                                           : std::tolower(static_cast<unsigned char>(c)));
    }
  } else if (how == "capitalize") {
    for (size_t i = 0; i < s.size(); ++i) {
      const auto u = static_cast<unsigned char>(s[i]);
      s[i] = static_cast<char>(i == 0 ? std::toupper(u) : std::tolower(u));
    }
  } else {  // title (jinja2's do_title: words begin after whitespace, '-', '[', '{', '(')
    bool word_start = true;
    for (char& c : s) {
      const auto u = static_cast<unsigned char>(c);
      const bool sep = IsPySpace(u) || c == '-' || c == '[' || c == '{' || c == '(';
      if (sep) {
        word_start = true;
        continue;
      }
      c = static_cast<char>(word_start ? std::toupper(u) : std::tolower(u));
      word_start = false;
    }
  }
  return out;
}

}  // namespace hc::jinja
