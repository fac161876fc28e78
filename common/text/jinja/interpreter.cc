// Template::Render: walks the syntax tree with jinja2's scoping (a for-loop
// body and a macro body get their own scope each; `if` does not), Python
// value semantics (builtins.h) and the bounds of RenderOptions.
#include <ctime>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/text/jinja/builtins.h"
#include "common/text/jinja/template.h"

namespace hc::jinja {
namespace {

struct Frame {
  absl::flat_hash_map<std::string, Value> vars;
  bool barrier = false;  // a macro's scope: names below it (but the globals) are hidden
};

class Interpreter {
 public:
  Interpreter(const Context& context, const RenderOptions& options) : options_(options) {
    frames_.emplace_back();
    for (const char* g : {"raise_exception", "strftime_now", "namespace", "dict", "range"}) {
      Value::Callable c;
      c.name = g;
      frames_[0].vars[g] = Value::MakeCallable(std::move(c));
    }
    for (const auto& [name, value] : context) frames_[0].vars[name] = value;
  }

  absl::StatusOr<Rendered> Run(const NodeList& body) {
    Text out;
    out_ = &out;
    if (absl::Status s = ExecBody(body); !s.ok()) return s;
    Rendered r;
    r.text = std::move(out.bytes);
    if (!out.has_data()) {
      if (!r.text.empty()) r.template_ranges.emplace_back(0, r.text.size());
      return r;
    }
    for (size_t i = 0; i < r.text.size();) {
      if (out.data_mask[i] != 0) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < r.text.size() && out.data_mask[j] == 0) ++j;
      r.template_ranges.emplace_back(i, j);
      i = j;
    }
    return r;
  }

 private:
  // An error from a builtin, located at `line` (raise_exception's message is
  // the template's own and stays as it is).
  absl::Status At(int line, const absl::Status& s) const {
    if (s.ok() || raised_) return s;
    return absl::Status(s.code(), absl::StrCat("chat template line ", line, ": ", s.message()));
  }

  absl::Status Emit(const Text& t) {
    out_->Append(t);
    if (out_->bytes.size() > options_.max_output_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("chat template output exceeds ", options_.max_output_bytes, " bytes"));
    }
    return absl::OkStatus();
  }

  absl::Status CountIterations(uint64_t n, int line) {
    iterations_ += n;
    if (iterations_ > options_.max_loop_iterations) {
      return absl::InvalidArgumentError(absl::StrCat("chat template line ", line, ": more than ",
                                                     options_.max_loop_iterations,
                                                     " loop iterations"));
    }
    return absl::OkStatus();
  }

  const Value* Lookup(const std::string& name) const {
    for (size_t i = frames_.size(); i-- > 0;) {
      auto it = frames_[i].vars.find(name);
      if (it != frames_[i].vars.end()) return &it->second;
      if (frames_[i].barrier) {
        auto g = frames_[0].vars.find(name);
        return g == frames_[0].vars.end() ? nullptr : &g->second;
      }
    }
    return nullptr;
  }

  void Assign(const std::string& name, Value v) { frames_.back().vars[name] = std::move(v); }

  absl::Status ExecBody(const NodeList& body) {
    for (const auto& n : body) {
      if (absl::Status s = Exec(*n); !s.ok()) return s;
      if (break_ || continue_) return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  absl::Status Exec(const Node& n) {
    switch (n.kind) {
      case Node::Kind::kText:
        return Emit(Text{n.text, ""});
      case Node::Kind::kPrint: {
        absl::StatusOr<Value> v = Eval(*n.expr);
        if (!v.ok()) return v.status();
        return Emit(ToText(*v));
      }
      case Node::Kind::kIf: {
        absl::StatusOr<Value> c = Eval(*n.expr);
        if (!c.ok()) return c.status();
        return ExecBody(c->Truthy() ? n.body : n.else_body);
      }
      case Node::Kind::kFor:
        return ExecFor(n);
      case Node::Kind::kSet:
        return ExecSet(n);
      case Node::Kind::kSetBlock: {
        Text captured;
        Text* saved = out_;
        out_ = &captured;
        absl::Status s = ExecBody(n.body);
        out_ = saved;
        if (!s.ok()) return s;
        Assign(n.targets[0], Value::FromText(std::move(captured)));
        return absl::OkStatus();
      }
      case Node::Kind::kMacro: {
        Value::Callable c;
        c.type = Value::Callable::Type::kMacro;
        c.name = n.macro->name;
        c.macro = n.macro.get();
        Assign(n.macro->name, Value::MakeCallable(std::move(c)));
        return absl::OkStatus();
      }
      case Node::Kind::kBreak:
        break_ = true;
        return absl::OkStatus();
      case Node::Kind::kContinue:
        continue_ = true;
        return absl::OkStatus();
      case Node::Kind::kBlock:
        return ExecBody(n.body);
    }
    return absl::OkStatus();
  }

  absl::Status Bind(const Node& n, const Value& item, Frame* f) {
    if (n.targets.size() == 1) {
      f->vars[n.targets[0]] = item;
      return absl::OkStatus();
    }
    absl::StatusOr<ValueList> parts = Iterate(item);
    if (!parts.ok()) return At(n.line, parts.status());
    if (parts->size() != n.targets.size()) {
      return At(n.line, absl::InvalidArgumentError(absl::StrCat(
                            "cannot unpack ", parts->size(), " values into ", n.targets.size())));
    }
    for (size_t i = 0; i < parts->size(); ++i) f->vars[n.targets[i]] = (*parts)[i];
    return absl::OkStatus();
  }

  absl::Status ExecFor(const Node& n) {
    absl::StatusOr<Value> seq = Eval(*n.expr);
    if (!seq.ok()) return seq.status();
    absl::StatusOr<ValueList> all = Iterate(*seq);
    if (!all.ok()) return At(n.line, all.status());
    if (absl::Status s = CountIterations(all->size(), n.line); !s.ok()) return s;
    ValueList items;
    if (n.filter) {
      for (Value& item : *all) {
        frames_.emplace_back();
        absl::Status s = Bind(n, item, &frames_.back());
        absl::StatusOr<Value> keep = s.ok() ? Eval(*n.filter) : absl::StatusOr<Value>(s);
        frames_.pop_back();
        if (!keep.ok()) return keep.status();
        if (keep->Truthy()) items.push_back(std::move(item));
      }
    } else {
      items = *std::move(all);
    }
    if (items.empty()) return ExecBody(n.else_body);
    const auto len = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < len; ++i) {
      frames_.emplace_back();
      Frame& f = frames_.back();
      if (absl::Status s = Bind(n, items[i], &f); !s.ok()) return s;
      ValuePairs loop = {
          {Value::String("index"), Value::Int(i + 1)},
          {Value::String("index0"), Value::Int(i)},
          {Value::String("revindex"), Value::Int(len - i)},
          {Value::String("revindex0"), Value::Int(len - i - 1)},
          {Value::String("first"), Value::Bool(i == 0)},
          {Value::String("last"), Value::Bool(i == len - 1)},
          {Value::String("length"), Value::Int(len)},
          {Value::String("depth"), Value::Int(1)},
          {Value::String("depth0"), Value::Int(0)},
          {Value::String("previtem"), i > 0 ? items[i - 1] : Value::Undefined("no previous item")},
          {Value::String("nextitem"),
           i + 1 < len ? items[i + 1] : Value::Undefined("no next item")},
      };
      f.vars["loop"] = Value::MakeDict(std::move(loop));
      absl::Status s = ExecBody(n.body);
      frames_.pop_back();
      if (!s.ok()) return s;
      continue_ = false;
      if (break_) {
        break_ = false;
        break;
      }
    }
    return absl::OkStatus();
  }

  absl::Status ExecSet(const Node& n) {
    absl::StatusOr<Value> v = Eval(*n.expr);
    if (!v.ok()) return v.status();
    if (!n.attr.empty()) {
      const Value* ns = Lookup(n.targets[0]);
      if (ns == nullptr || !ns->is_namespace()) {
        return At(n.line,
                  absl::InvalidArgumentError("cannot assign attribute on non-namespace object"));
      }
      if (Value* slot = ns->FindAttr(n.attr)) {
        *slot = *std::move(v);
      } else {
        ns->AsNamespace().attrs.emplace_back(n.attr, *std::move(v));
      }
      return absl::OkStatus();
    }
    if (n.targets.size() == 1) {
      Assign(n.targets[0], *std::move(v));
      return absl::OkStatus();
    }
    Frame tmp;
    if (absl::Status s = Bind(n, *v, &tmp); !s.ok()) return s;
    for (auto& [name, value] : tmp.vars) Assign(name, std::move(value));
    return absl::OkStatus();
  }

  absl::StatusOr<CallArgs> EvalArgs(const Expr& e, size_t first) {
    CallArgs a;
    for (size_t i = first; i < e.children.size(); ++i) {
      absl::StatusOr<Value> v = Eval(*e.children[i]);
      if (!v.ok()) return v.status();
      a.args.push_back(*std::move(v));
    }
    for (const auto& [k, x] : e.kwargs) {
      absl::StatusOr<Value> v = Eval(*x);
      if (!v.ok()) return v.status();
      a.kwargs.emplace_back(k, *std::move(v));
    }
    return a;
  }

  absl::StatusOr<Value> Eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.literal;
      case Expr::Kind::kName: {
        const Value* v = Lookup(e.name);
        if (v == nullptr) return Value::Undefined(absl::StrCat("'", e.name, "' is undefined"));
        return *v;
      }
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        ValueList items;
        for (const auto& c : e.children) {
          absl::StatusOr<Value> v = Eval(*c);
          if (!v.ok()) return v;
          items.push_back(*std::move(v));
        }
        return Value::MakeList(std::move(items), e.kind == Expr::Kind::kTuple);
      }
      case Expr::Kind::kDict: {
        ValuePairs items;
        for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
          absl::StatusOr<Value> k = Eval(*e.children[i]);
          if (!k.ok()) return k;
          absl::StatusOr<Value> v = Eval(*e.children[i + 1]);
          if (!v.ok()) return v;
          bool replaced = false;
          for (auto& [key, value] : items) {
            if (key.Equals(*k)) {
              value = *v;
              replaced = true;
            }
          }
          if (!replaced) items.emplace_back(*std::move(k), *std::move(v));
        }
        return Value::MakeDict(std::move(items));
      }
      case Expr::Kind::kGetAttr: {
        absl::StatusOr<Value> obj = Eval(*e.children[0]);
        if (!obj.ok()) return obj;
        absl::StatusOr<Value> r = GetAttr(*obj, e.name);
        if (!r.ok()) return At(e.line, r.status());
        return r;
      }
      case Expr::Kind::kGetItem: {
        absl::StatusOr<Value> obj = Eval(*e.children[0]);
        if (!obj.ok()) return obj;
        absl::StatusOr<Value> key = Eval(*e.children[1]);
        if (!key.ok()) return key;
        absl::StatusOr<Value> r = GetItem(*obj, *key);
        if (!r.ok()) return At(e.line, r.status());
        return r;
      }
      case Expr::Kind::kSlice: {
        absl::StatusOr<Value> obj = Eval(*e.children[0]);
        if (!obj.ok()) return obj;
        Value parts[3];
        const Value* ptrs[3] = {nullptr, nullptr, nullptr};
        for (int i = 0; i < 3; ++i) {
          if (!e.children[i + 1]) continue;
          absl::StatusOr<Value> p = Eval(*e.children[i + 1]);
          if (!p.ok()) return p;
          parts[i] = *std::move(p);
          ptrs[i] = &parts[i];
        }
        absl::StatusOr<Value> r = GetSlice(*obj, ptrs[0], ptrs[1], ptrs[2]);
        if (!r.ok()) return At(e.line, r.status());
        return r;
      }
      case Expr::Kind::kCall:
        return EvalCall(e);
      case Expr::Kind::kFilter: {
        absl::StatusOr<Value> operand = Eval(*e.children[0]);
        if (!operand.ok()) return operand;
        absl::StatusOr<CallArgs> args = EvalArgs(e, 1);
        if (!args.ok()) return args.status();
        absl::StatusOr<Value> r = ApplyFilter(e.name, *operand, *args);
        if (!r.ok()) return At(e.line, r.status());
        return r;
      }
      case Expr::Kind::kTest: {
        absl::StatusOr<Value> operand = Eval(*e.children[0]);
        if (!operand.ok()) return operand;
        absl::StatusOr<CallArgs> args = EvalArgs(e, 1);
        if (!args.ok()) return args.status();
        absl::StatusOr<bool> r = ApplyTest(e.name, *operand, *args);
        if (!r.ok()) return At(e.line, r.status());
        return Value::Bool(*r != e.negated);
      }
      case Expr::Kind::kUnary: {
        absl::StatusOr<Value> v = Eval(*e.children[0]);
        if (!v.ok()) return v;
        if (e.name == "not") return Value::Bool(!v->Truthy());
        if (e.name == "-") {
          absl::StatusOr<Value> r = Negate(*v);
          if (!r.ok()) return At(e.line, r.status());
          return r;
        }
        if (!v->is_number()) {
          return At(e.line, absl::InvalidArgumentError(absl::StrCat(
                                "bad operand type for unary +: '", v->TypeName(), "'")));
        }
        return v->is_float() ? *v : Value::Int(v->AsInt());
      }
      case Expr::Kind::kBinary: {
        absl::StatusOr<Value> a = Eval(*e.children[0]);
        if (!a.ok()) return a;
        absl::StatusOr<Value> b = Eval(*e.children[1]);
        if (!b.ok()) return b;
        absl::StatusOr<Value> r = BinaryOp(e.name, *a, *b);
        if (!r.ok()) return At(e.line, r.status());
        if (r->is_string() && r->str().size() > options_.max_output_bytes) {
          return At(e.line, absl::InvalidArgumentError("string exceeds the output limit"));
        }
        return r;
      }
      case Expr::Kind::kCompare: {
        absl::StatusOr<Value> left = Eval(*e.children[0]);
        if (!left.ok()) return left;
        for (size_t i = 0; i < e.ops.size(); ++i) {
          absl::StatusOr<Value> right = Eval(*e.children[i + 1]);
          if (!right.ok()) return right;
          absl::StatusOr<bool> c = Compare(e.ops[i], *left, *right);
          if (!c.ok()) return At(e.line, c.status());
          if (!*c) return Value::Bool(false);
          left = std::move(right);
        }
        return Value::Bool(true);
      }
      case Expr::Kind::kAnd:
      case Expr::Kind::kOr: {
        absl::StatusOr<Value> a = Eval(*e.children[0]);
        if (!a.ok()) return a;
        if (a->Truthy() == (e.kind == Expr::Kind::kOr)) return a;
        return Eval(*e.children[1]);
      }
      case Expr::Kind::kCondExpr: {
        absl::StatusOr<Value> c = Eval(*e.children[1]);
        if (!c.ok()) return c;
        if (c->Truthy()) return Eval(*e.children[0]);
        if (e.children[2]) return Eval(*e.children[2]);
        return Value::Undefined("the inline if-expression evaluated to false and has no else");
      }
    }
    return Value();
  }

  absl::StatusOr<Value> EvalCall(const Expr& e) {
    const Expr& callee = *e.children[0];
    Value fn;
    if (callee.kind == Expr::Kind::kGetAttr) {
      absl::StatusOr<Value> obj = Eval(*callee.children[0]);
      if (!obj.ok()) return obj;
      absl::StatusOr<Value> f = GetAttr(*obj, callee.name);
      if (!f.ok()) return At(e.line, f.status());
      fn = *std::move(f);
    } else {
      absl::StatusOr<Value> f = Eval(callee);
      if (!f.ok()) return f;
      fn = *std::move(f);
    }
    if (!fn.is_callable()) {
      if (fn.is_undefined()) {
        const std::string& hint = fn.undefined_hint();
        return At(e.line,
                  absl::InvalidArgumentError(hint.empty() ? "call of an undefined value" : hint));
      }
      return At(e.line, absl::InvalidArgumentError(
                            absl::StrCat("'", fn.TypeName(), "' object is not callable")));
    }
    absl::StatusOr<CallArgs> args = EvalArgs(e, 1);
    if (!args.ok()) return args.status();
    const Value::Callable& c = fn.AsCallable();
    absl::StatusOr<Value> r;
    switch (c.type) {
      case Value::Callable::Type::kMethod:
        r = CallMethod(*c.self, c.name, *args);
        break;
      case Value::Callable::Type::kMacro:
        return CallMacro(*c.macro, *args, e.line);
      case Value::Callable::Type::kGlobal:
        r = CallGlobal(c.name, *args);
        break;
    }
    if (!r.ok()) return At(e.line, r.status());
    return r;
  }

  absl::StatusOr<Value> CallGlobal(const std::string& name, const CallArgs& a) {
    static const Value kUndef;
    if (name == "raise_exception") {
      raised_ = true;
      return absl::InvalidArgumentError(ToText(a.Get(0, "message", kUndef)).bytes);
    }
    if (name == "strftime_now") {
      const Value& fmt = a.Get(0, "format", kUndef);
      if (!fmt.is_string())
        return absl::InvalidArgumentError("strftime_now: format must be a string");
      const std::time_t now = std::time(nullptr);
      std::tm tm;
      localtime_r(&now, &tm);
      char buf[512];
      const size_t n = std::strftime(buf, sizeof(buf), fmt.str().c_str(), &tm);
      return Value::String(std::string(buf, n));
    }
    if (name == "namespace" || name == "dict") {
      std::vector<std::pair<std::string, Value>> attrs;
      ValuePairs items;
      for (const Value& positional : a.args) {
        if (!positional.is_dict()) {
          return absl::InvalidArgumentError(
              absl::StrCat(name, "(): positional argument must be a dict"));
        }
        for (const auto& [k, v] : positional.AsDict().items) {
          if (!k.is_string())
            return absl::InvalidArgumentError(absl::StrCat(name, "(): keys must be strings"));
          attrs.emplace_back(k.str(), v);
          items.emplace_back(k, v);
        }
      }
      for (const auto& [k, v] : a.kwargs) {
        attrs.emplace_back(k, v);
        items.emplace_back(Value::String(k), v);
      }
      if (name == "dict") return Value::MakeDict(std::move(items));
      for (const auto& [k, v] : attrs) {
        if (!k.empty() && k[0] == '_') {
          return absl::InvalidArgumentError(
              absl::StrCat("Chat templates cannot store underscore-prefixed attributes on a "
                           "namespace, but got '",
                           k, "'"));
        }
      }
      return Value::MakeNamespace(std::move(attrs));
    }
    // range(stop) / range(start, stop[, step])
    int64_t bounds[3] = {0, 0, 1};
    if (a.args.empty() || a.args.size() > 3)
      return absl::InvalidArgumentError("range() takes 1 to 3 arguments");
    for (const Value& v : a.args) {
      if (!v.is_int() && !v.is_bool())
        return absl::InvalidArgumentError("range() arguments must be integers");
    }
    if (a.args.size() == 1) {
      bounds[1] = a.args[0].AsInt();
    } else {
      bounds[0] = a.args[0].AsInt();
      bounds[1] = a.args[1].AsInt();
      if (a.args.size() == 3) bounds[2] = a.args[2].AsInt();
    }
    if (bounds[2] == 0) return absl::InvalidArgumentError("range() arg 3 must not be zero");
    ValueList items;
    for (int64_t i = bounds[0]; bounds[2] > 0 ? i < bounds[1] : i > bounds[1]; i += bounds[2]) {
      if (items.size() >= options_.max_loop_iterations) {
        return absl::InvalidArgumentError("range() is larger than the loop iteration limit");
      }
      items.push_back(Value::Int(i));
    }
    return Value::MakeList(std::move(items));
  }

  absl::StatusOr<Value> CallMacro(const MacroDef& m, const CallArgs& a, int line) {
    if (macro_depth_ >= options_.max_macro_depth) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chat template line ", line, ": macros nested deeper than ", options_.max_macro_depth));
    }
    if (a.args.size() > m.params.size()) {
      return absl::InvalidArgumentError(absl::StrCat("chat template line ", line, ": macro '",
                                                     m.name, "' takes not more than ",
                                                     m.params.size(), " argument(s)"));
    }
    Frame f;
    f.barrier = true;
    for (const auto& [k, v] : a.kwargs) {
      if (std::find(m.params.begin(), m.params.end(), k) == m.params.end()) {
        return absl::InvalidArgumentError(absl::StrCat("chat template line ", line, ": macro '",
                                                       m.name, "' takes no keyword argument '", k,
                                                       "'"));
      }
    }
    frames_.push_back(std::move(f));
    ++macro_depth_;
    absl::Status s;
    for (size_t i = 0; i < m.params.size() && s.ok(); ++i) {
      const std::string& p = m.params[i];
      Value v;
      bool given = false;
      if (i < a.args.size()) {
        v = a.args[i];
        given = true;
      }
      for (const auto& [k, kv] : a.kwargs) {
        if (k == p) {
          v = kv;
          given = true;
        }
      }
      if (!given && m.defaults[i]) {
        absl::StatusOr<Value> d = Eval(*m.defaults[i]);
        if (!d.ok()) {
          s = d.status();
          break;
        }
        v = *std::move(d);
      } else if (!given) {
        v = Value::Undefined(absl::StrCat("parameter '", p, "' was not provided"));
      }
      frames_.back().vars[p] = std::move(v);
    }
    Text captured;
    Text* saved = out_;
    out_ = &captured;
    if (s.ok()) s = ExecBody(m.body);
    out_ = saved;
    --macro_depth_;
    frames_.pop_back();
    if (!s.ok()) return s;
    return Value::FromText(std::move(captured));
  }

  const RenderOptions& options_;
  std::vector<Frame> frames_;
  Text* out_ = nullptr;
  uint64_t iterations_ = 0;
  int macro_depth_ = 0;
  bool break_ = false;
  bool continue_ = false;
  bool raised_ = false;
};

}  // namespace

absl::StatusOr<Rendered> Template::Render(const Context& context,
                                          const RenderOptions& options) const {
  return Interpreter(context, options).Run(body_);
}

}  // namespace hc::jinja
