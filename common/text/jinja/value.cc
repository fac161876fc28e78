#include "common/text/jinja/value.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/text/jinja/pystr.h"

namespace hc::jinja {

void Text::Append(const Text& other) {
  if (other.has_data() && !has_data()) data_mask.assign(bytes.size(), 0);
  bytes.append(other.bytes);
  if (other.has_data()) {
    data_mask.append(other.data_mask);
  } else if (has_data()) {
    data_mask.append(other.bytes.size(), 0);
  }
}

void Text::Append(std::string_view template_bytes) {
  bytes.append(template_bytes);
  if (has_data()) data_mask.append(template_bytes.size(), 0);
}

Text Text::Sub(size_t begin, size_t end) const {
  Text t;
  t.bytes = bytes.substr(begin, end - begin);
  if (has_data()) {
    t.data_mask = data_mask.substr(begin, end - begin);
    if (t.data_mask.find('\1') == std::string::npos) t.data_mask.clear();
  }
  return t;
}

Value Value::Undefined(std::string hint) {
  Value v;
  v.kind_ = Kind::kUndefined;
  if (!hint.empty()) v.text_ = std::make_shared<const Text>(Text{std::move(hint), ""});
  return v;
}

Value Value::None() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}

Value Value::Bool(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.b_ = b;
  return v;
}

Value Value::Int(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.i_ = i;
  return v;
}

Value Value::Float(double d) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.f_ = d;
  return v;
}

Value Value::String(std::string s) { return FromText(Text{std::move(s), ""}); }

Value Value::FromText(Text t) {
  Value v;
  v.kind_ = Kind::kString;
  v.text_ = std::make_shared<const Text>(std::move(t));
  return v;
}

Value Value::MakeList(ValueList items, bool is_tuple) {
  Value v;
  v.kind_ = Kind::kList;
  v.list_ = std::make_shared<const List>(List{std::move(items), is_tuple});
  return v;
}

Value Value::MakeDict(ValuePairs items) {
  Value v;
  v.kind_ = Kind::kDict;
  v.dict_ = std::make_shared<const Dict>(Dict{std::move(items)});
  return v;
}

Value Value::MakeNamespace(std::vector<std::pair<std::string, Value>> attrs) {
  Value v;
  v.kind_ = Kind::kNamespace;
  v.ns_ = std::make_shared<Namespace>(Namespace{std::move(attrs)});
  return v;
}

Value Value::MakeCallable(Callable c) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.fn_ = std::make_shared<const Callable>(std::move(c));
  return v;
}

Value Value::FromJson(const json::Value& j, bool from_data) {
  switch (j.type()) {
    case json::Value::Type::kNull:
      return None();
    case json::Value::Type::kBool:
      return Bool(j.AsBool());
    case json::Value::Type::kNumber:
      return j.is_int() ? Int(j.AsInt64()) : Float(j.AsDouble());
    case json::Value::Type::kString: {
      Text t{j.AsString(), ""};
      if (from_data) t.MarkAllData();
      return FromText(std::move(t));
    }
    case json::Value::Type::kArray: {
      ValueList items;
      for (const json::Value& item : j.AsArray()) items.push_back(FromJson(item, from_data));
      return MakeList(std::move(items));
    }
    case json::Value::Type::kObject: {
      ValuePairs items;
      for (const auto& [k, item] : j.AsObject()) {
        Text key{k, ""};
        if (from_data) key.MarkAllData();
        items.emplace_back(FromText(std::move(key)), FromJson(item, from_data));
      }
      return MakeDict(std::move(items));
    }
  }
  return None();
}

const std::string& Value::undefined_hint() const {
  static const std::string kEmpty;
  return text_ ? text_->bytes : kEmpty;
}

const Value* Value::FindKey(absl::string_view key) const {
  for (const auto& [k, v] : dict_->items) {
    if (k.is_string() && k.str() == key) return &v;
  }
  return nullptr;
}

Value* Value::FindAttr(absl::string_view name) const {
  for (auto& [k, v] : ns_->attrs) {
    if (k == name) return &v;
  }
  return nullptr;
}

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return b_;
    case Kind::kInt:
      return i_ != 0;
    case Kind::kFloat:
      return f_ != 0;
    case Kind::kString:
      return !text_->bytes.empty();
    case Kind::kList:
      return !list_->items.empty();
    case Kind::kDict:
      return !dict_->items.empty();
    case Kind::kNamespace:
    case Kind::kCallable:
      return true;
  }
  return false;
}

bool Value::Equals(const Value& o) const {
  if (is_number() && o.is_number()) {
    if (is_float() || o.is_float()) return AsDouble() == o.AsDouble();
    return AsInt() == o.AsInt();
  }
  if (kind_ != o.kind_) return false;
  switch (kind_) {
    case Kind::kUndefined:  // jinja2: Undefined == Undefined
    case Kind::kNone:
      return true;
    case Kind::kString:
      return str() == o.str();
    case Kind::kList: {
      const auto& a = list_->items;
      const auto& b = o.list_->items;
      if (list_->is_tuple != o.list_->is_tuple || a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); ++i) {
        if (!a[i].Equals(b[i])) return false;
      }
      return true;
    }
    case Kind::kDict: {
      const auto& a = dict_->items;
      if (a.size() != o.dict_->items.size()) return false;
      for (const auto& [k, v] : a) {
        bool found = false;
        for (const auto& [k2, v2] : o.dict_->items) {
          if (k.Equals(k2)) {
            if (!v.Equals(v2)) return false;
            found = true;
            break;
          }
        }
        if (!found) return false;
      }
      return true;
    }
    case Kind::kNamespace:
      return ns_ == o.ns_;
    case Kind::kCallable:
      return fn_ == o.fn_;
    default:
      return false;
  }
}

std::string Value::TypeName() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kList:
      return list_->is_tuple ? "tuple" : "list";
    case Kind::kDict:
      return "dict";
    case Kind::kNamespace:
      return "Namespace";
    case Kind::kCallable:
      return "function";
  }
  return "object";
}

std::string Repr(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kString:
      return StrRepr(v.str());
    case Value::Kind::kList: {
      const auto& l = v.AsList();
      std::string out = l.is_tuple ? "(" : "[";
      for (size_t i = 0; i < l.items.size(); ++i) {
        if (i > 0) out += ", ";
        out += Repr(l.items[i]);
      }
      if (l.is_tuple && l.items.size() == 1) out += ",";
      out += l.is_tuple ? ")" : "]";
      return out;
    }
    case Value::Kind::kDict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, item] : v.AsDict().items) {
        if (!first) out += ", ";
        first = false;
        out += Repr(k) + ": " + Repr(item);
      }
      return out + "}";
    }
    case Value::Kind::kUndefined:
      return "Undefined";
    default:
      return ToText(v).bytes;
  }
}

Text ToText(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return {};
    case Value::Kind::kNone:
      return {"None", ""};
    case Value::Kind::kBool:
      return {v.AsBool() ? "True" : "False", ""};
    case Value::Kind::kInt:
      return {std::to_string(v.AsInt()), ""};
    case Value::Kind::kFloat:
      return {FloatRepr(v.AsDouble()), ""};
    case Value::Kind::kString:
      return v.AsText();
    case Value::Kind::kNamespace:
      return {"<Namespace>", ""};
    case Value::Kind::kCallable:
      return {"<function " + v.AsCallable().name + ">", ""};
    default: {
      // A container prints as its repr; it is data if any string in it is.
      Text t{Repr(v), ""};
      std::vector<const Value*> stack{&v};
      while (!stack.empty()) {
        const Value* x = stack.back();
        stack.pop_back();
        if (x->is_string() && x->AsText().has_data()) {
          t.MarkAllData();
          break;
        }
        if (x->is_list()) {
          for (const Value& item : x->AsList().items) stack.push_back(&item);
        } else if (x->is_dict()) {
          for (const auto& [k, item] : x->AsDict().items) {
            stack.push_back(&k);
            stack.push_back(&item);
          }
        }
      }
      return t;
    }
  }
}

namespace {

// Python json's string escaping (ensure_ascii optional).
void AppendJsonString(const Text& s, bool ensure_ascii, Text* out) {
  std::string q = "\"";
  for (size_t i = 0; i < s.bytes.size();) {
    const auto c = static_cast<unsigned char>(s.bytes[i]);
    switch (c) {
      case '"':
        q += "\\\"";
        ++i;
        continue;
      case '\\':
        q += "\\\\";
        ++i;
        continue;
      case '\n':
        q += "\\n";
        ++i;
        continue;
      case '\r':
        q += "\\r";
        ++i;
        continue;
      case '\t':
        q += "\\t";
        ++i;
        continue;
      case '\b':
        q += "\\b";
        ++i;
        continue;
      case '\f':
        q += "\\f";
        ++i;
        continue;
      default:
        break;
    }
    char buf[16];
    if (c < 0x20) {
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      q += buf;
      ++i;
    } else if (c < 0x80 || !ensure_ascii) {
      q.push_back(static_cast<char>(c));
      ++i;
    } else {
      uint32_t cp = c;
      size_t n = 1;
      for (; n < 4 && i + n < s.bytes.size() &&
             (static_cast<unsigned char>(s.bytes[i + n]) & 0xC0) == 0x80;
           ++n) {
      }
      // Decode (input strings are valid UTF-8: they come from JSON or the template).
      const unsigned char b0 = c;
      cp = n == 2 ? (b0 & 0x1F) : n == 3 ? (b0 & 0x0F) : (b0 & 0x07);
      for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (s.bytes[i + k] & 0x3F);
      if (cp >= 0x10000) {
        const uint32_t v = cp - 0x10000;
        std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
      } else {
        std::snprintf(buf, sizeof(buf), "\\u%04x", cp);
      }
      q += buf;
      i += n;
    }
  }
  q += "\"";
  Text t{std::move(q), ""};
  if (s.has_data()) t.MarkAllData();
  out->Append(t);
}

absl::Status WriteJson(const Value& v, const JsonOptions& o, int level, Text* out) {
  auto newline = [&](int lvl) {
    if (o.indent < 0) return;
    out->Append("\n" + std::string(static_cast<size_t>(o.indent * lvl), ' '));
  };
  const std::string item_sep =
      !o.item_separator.empty() ? o.item_separator : (o.indent < 0 ? ", " : ",");
  const std::string key_sep = !o.key_separator.empty() ? o.key_separator : ": ";
  switch (v.kind()) {
    case Value::Kind::kNone:
      out->Append("null");
      return absl::OkStatus();
    case Value::Kind::kBool:
      out->Append(v.AsBool() ? "true" : "false");
      return absl::OkStatus();
    case Value::Kind::kInt:
      out->Append(std::to_string(v.AsInt()));
      return absl::OkStatus();
    case Value::Kind::kFloat: {
      const double d = v.AsDouble();
      out->Append(std::isnan(d)   ? "NaN"
                  : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity")
                                  : FloatRepr(d));
      return absl::OkStatus();
    }
    case Value::Kind::kString:
      AppendJsonString(v.AsText(), o.ensure_ascii, out);
      return absl::OkStatus();
    case Value::Kind::kList: {
      const auto& items = v.AsList().items;
      if (items.empty()) {
        out->Append("[]");
        return absl::OkStatus();
      }
      out->Append("[");
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out->Append(item_sep);
        newline(level + 1);
        if (absl::Status s = WriteJson(items[i], o, level + 1, out); !s.ok()) return s;
      }
      newline(level);
      out->Append("]");
      return absl::OkStatus();
    }
    case Value::Kind::kDict: {
      std::vector<const std::pair<Value, Value>*> members;
      for (const auto& m : v.AsDict().items) members.push_back(&m);
      if (members.empty()) {
        out->Append("{}");
        return absl::OkStatus();
      }
      if (o.sort_keys) {
        std::stable_sort(members.begin(), members.end(), [](const auto* a, const auto* b) {
          return a->first.str() < b->first.str();
        });
      }
      out->Append("{");
      for (size_t i = 0; i < members.size(); ++i) {
        if (i > 0) out->Append(item_sep);
        newline(level + 1);
        const Value& k = members[i]->first;
        if (k.is_string()) {
          AppendJsonString(k.AsText(), o.ensure_ascii, out);
        } else if (k.is_none() || k.is_bool() || k.is_number()) {
          Text key;
          if (absl::Status s = WriteJson(k, o, level + 1, &key); !s.ok()) return s;
          AppendJsonString(key, o.ensure_ascii, out);
        } else {
          return absl::InvalidArgumentError(
              absl::StrCat("keys must be str, int, float, bool or None, not ", k.TypeName()));
        }
        out->Append(key_sep);
        if (absl::Status s = WriteJson(members[i]->second, o, level + 1, out); !s.ok()) return s;
      }
      newline(level);
      out->Append("}");
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("Object of type ", v.TypeName(), " is not JSON serializable"));
  }
}

}  // namespace

absl::StatusOr<Text> ToJson(const Value& v, const JsonOptions& options) {
  Text out;
  if (absl::Status s = WriteJson(v, options, 0, &out); !s.ok()) return s;
  return out;
}

}  // namespace hc::jinja
