#include "common/text/jinja/parser_expr.h"

#include <set>

#include "absl/strings/numbers.h"
#include "common/text/jinja/builtins.h"

namespace hc::jinja::internal {

ExprPtr ExprParser::Make(Expr::Kind kind, int line) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = line;
  return e;
}

// expr (',' expr)* — a bare tuple where jinja2 allows one.
absl::StatusOr<ExprPtr> ExprParser::ParseTupleOrExpr(bool no_cond) {
  const int line = Peek().line;
  absl::StatusOr<ExprPtr> first = no_cond ? ParseOr() : ParseExpr();
  if (!first.ok() || !IsOp(",")) return first;
  ExprPtr t = Make(Expr::Kind::kTuple, line);
  t->children.push_back(*std::move(first));
  while (IsOp(",")) {
    ++pos_;
    if (Peek().type == TokenType::kBlockEnd || Peek().type == TokenType::kVarEnd) break;
    absl::StatusOr<ExprPtr> e = no_cond ? ParseOr() : ParseExpr();
    if (!e.ok()) return e.status();
    t->children.push_back(*std::move(e));
  }
  return t;
}

absl::StatusOr<ExprPtr> ExprParser::ParseExpr() {
  const int line = Peek().line;
  absl::StatusOr<ExprPtr> e = ParseOr();
  if (!e.ok()) return e;
  while (IsName("if")) {
    ++pos_;
    ExprPtr c = Make(Expr::Kind::kCondExpr, line);
    c->children.push_back(*std::move(e));
    absl::StatusOr<ExprPtr> cond = ParseOr();
    if (!cond.ok()) return cond;
    c->children.push_back(*std::move(cond));
    if (IsName("else")) {
      ++pos_;
      absl::StatusOr<ExprPtr> other = ParseExpr();
      if (!other.ok()) return other;
      c->children.push_back(*std::move(other));
    } else {
      c->children.push_back(nullptr);
    }
    e = std::move(c);
  }
  return e;
}

absl::StatusOr<ExprPtr> ExprParser::ParseBinaryChain(Expr::Kind kind, absl::string_view keyword,
                                                     absl::StatusOr<ExprPtr> (ExprParser::*sub)()) {
  absl::StatusOr<ExprPtr> left = (this->*sub)();
  if (!left.ok()) return left;
  while (IsName(keyword)) {
    const int line = Next().line;
    absl::StatusOr<ExprPtr> right = (this->*sub)();
    if (!right.ok()) return right;
    ExprPtr e = Make(kind, line);
    e->children.push_back(*std::move(left));
    e->children.push_back(*std::move(right));
    left = std::move(e);
  }
  return left;
}
absl::StatusOr<ExprPtr> ExprParser::ParseOr() {
  return ParseBinaryChain(Expr::Kind::kOr, "or", &ExprParser::ParseAnd);
}
absl::StatusOr<ExprPtr> ExprParser::ParseAnd() {
  return ParseBinaryChain(Expr::Kind::kAnd, "and", &ExprParser::ParseNot);
}

absl::StatusOr<ExprPtr> ExprParser::ParseNot() {
  if (IsName("not")) {
    const int line = Next().line;
    absl::StatusOr<ExprPtr> operand = ParseNot();
    if (!operand.ok()) return operand;
    ExprPtr e = Make(Expr::Kind::kUnary, line);
    e->name = "not";
    e->children.push_back(*std::move(operand));
    return e;
  }
  return ParseCompare();
}

absl::StatusOr<ExprPtr> ExprParser::ParseCompare() {
  const int line = Peek().line;
  absl::StatusOr<ExprPtr> first = ParseMath1();
  if (!first.ok()) return first;
  ExprPtr cmp;
  while (true) {
    std::string op;
    if (Peek().type == TokenType::kOp &&
        (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp("<=") || IsOp(">") || IsOp(">="))) {
      op = Next().value;
    } else if (IsName("in")) {
      ++pos_;
      op = "in";
    } else if (IsName("not") && IsName("in", 1)) {
      pos_ += 2;
      op = "not in";
    } else {
      break;
    }
    if (!cmp) {
      cmp = Make(Expr::Kind::kCompare, line);
      cmp->children.push_back(*std::move(first));
    }
    absl::StatusOr<ExprPtr> next = ParseMath1();
    if (!next.ok()) return next;
    cmp->ops.push_back(op);
    cmp->children.push_back(*std::move(next));
  }
  if (cmp) return cmp;
  return first;
}

absl::StatusOr<ExprPtr> ExprParser::ParseBinaryOps(std::initializer_list<absl::string_view> ops,
                                                   absl::StatusOr<ExprPtr> (ExprParser::*sub)()) {
  absl::StatusOr<ExprPtr> left = (this->*sub)();
  if (!left.ok()) return left;
  while (true) {
    std::string op;
    for (const absl::string_view o : ops) {
      if (IsOp(o)) op = std::string(o);
    }
    if (op.empty()) return left;
    const int line = Next().line;
    absl::StatusOr<ExprPtr> right = (this->*sub)();
    if (!right.ok()) return right;
    ExprPtr e = Make(Expr::Kind::kBinary, line);
    e->name = op;
    e->children.push_back(*std::move(left));
    e->children.push_back(*std::move(right));
    left = std::move(e);
  }
}
absl::StatusOr<ExprPtr> ExprParser::ParseMath1() {
  return ParseBinaryOps({"+", "-"}, &ExprParser::ParseConcat);
}
absl::StatusOr<ExprPtr> ExprParser::ParseConcat() {
  return ParseBinaryOps({"~"}, &ExprParser::ParseMath2);
}
absl::StatusOr<ExprPtr> ExprParser::ParseMath2() {
  return ParseBinaryOps({"*", "/", "//", "%"}, &ExprParser::ParsePow);
}
absl::StatusOr<ExprPtr> ExprParser::ParsePow() {
  return ParseBinaryOps({"**"}, &ExprParser::ParseUnaryFiltered);
}

absl::StatusOr<ExprPtr> ExprParser::ParseUnaryFiltered() { return ParseUnary(true); }

absl::StatusOr<ExprPtr> ExprParser::ParseUnary(bool with_filter) {
  absl::StatusOr<ExprPtr> e;
  if (IsOp("-") || IsOp("+")) {
    const Token& op = Next();
    absl::StatusOr<ExprPtr> operand = ParseUnary(false);
    if (!operand.ok()) return operand;
    ExprPtr u = Make(Expr::Kind::kUnary, op.line);
    u->name = op.value;
    u->children.push_back(*std::move(operand));
    e = std::move(u);
  } else {
    e = ParsePrimary();
  }
  if (!e.ok()) return e;
  e = ParsePostfix(*std::move(e));
  if (!e.ok() || !with_filter) return e;
  return ParseFilterExpr(*std::move(e));
}

absl::StatusOr<ExprPtr> ExprParser::ParsePrimary() {
  const Token& tok = Next();
  switch (tok.type) {
    case TokenType::kName: {
      static const std::set<std::string> kKeywords = {"and", "or", "not",  "in",
                                                      "is",  "if", "else", "elif"};
      if (kKeywords.count(tok.value) != 0) {
        return Syntax(tok.line, absl::StrCat("unexpected '", tok.value, "'"));
      }
      ExprPtr e = Make(Expr::Kind::kLiteral, tok.line);
      if (tok.value == "true" || tok.value == "True") {
        e->literal = Value::Bool(true);
      } else if (tok.value == "false" || tok.value == "False") {
        e->literal = Value::Bool(false);
      } else if (tok.value == "none" || tok.value == "None") {
        e->literal = Value::None();
      } else {
        e->kind = Expr::Kind::kName;
        e->name = tok.value;
      }
      return e;
    }
    case TokenType::kString: {
      std::string s = tok.value;
      while (Peek().type == TokenType::kString) s += Next().value;  // "a" "b"
      ExprPtr e = Make(Expr::Kind::kLiteral, tok.line);
      e->literal = Value::String(std::move(s));
      return e;
    }
    case TokenType::kInt: {
      int64_t i;
      if (!absl::SimpleAtoi(tok.value, &i)) return Syntax(tok.line, "integer literal too large");
      ExprPtr e = Make(Expr::Kind::kLiteral, tok.line);
      e->literal = Value::Int(i);
      return e;
    }
    case TokenType::kFloat: {
      double d;
      if (!absl::SimpleAtod(tok.value, &d)) return Syntax(tok.line, "bad float literal");
      ExprPtr e = Make(Expr::Kind::kLiteral, tok.line);
      e->literal = Value::Float(d);
      return e;
    }
    case TokenType::kOp:
      if (tok.value == "(") {
        if (IsOp(")")) {
          ++pos_;
          return Make(Expr::Kind::kTuple, tok.line);
        }
        absl::StatusOr<ExprPtr> inner = ParseTupleOrExpr();
        if (!inner.ok()) return inner;
        if (absl::Status s = Expect(")"); !s.ok()) return s;
        return inner;
      }
      if (tok.value == "[") {
        ExprPtr e = Make(Expr::Kind::kList, tok.line);
        while (!IsOp("]")) {
          absl::StatusOr<ExprPtr> item = ParseExpr();
          if (!item.ok()) return item;
          e->children.push_back(*std::move(item));
          if (!IsOp("]")) {
            if (absl::Status s = Expect(","); !s.ok()) return s;
          }
        }
        ++pos_;
        return e;
      }
      if (tok.value == "{") {
        ExprPtr e = Make(Expr::Kind::kDict, tok.line);
        while (!IsOp("}")) {
          absl::StatusOr<ExprPtr> key = ParseExpr();
          if (!key.ok()) return key;
          if (absl::Status s = Expect(":"); !s.ok()) return s;
          absl::StatusOr<ExprPtr> value = ParseExpr();
          if (!value.ok()) return value;
          e->children.push_back(*std::move(key));
          e->children.push_back(*std::move(value));
          if (!IsOp("}")) {
            if (absl::Status s = Expect(","); !s.ok()) return s;
          }
        }
        ++pos_;
        return e;
      }
      break;
    default:
      break;
  }
  return Syntax(tok.line, absl::StrCat("unexpected '", tok.value, "'"));
}

absl::StatusOr<ExprPtr> ExprParser::ParsePostfix(ExprPtr e) {
  while (true) {
    if (IsOp(".")) {
      const int line = Next().line;
      const Token& attr = Next();
      if (attr.type == TokenType::kInt) {
        ExprPtr g = Make(Expr::Kind::kGetItem, line);
        g->children.push_back(std::move(e));
        ExprPtr idx = Make(Expr::Kind::kLiteral, line);
        int64_t i = 0;
        (void)absl::SimpleAtoi(attr.value, &i);
        idx->literal = Value::Int(i);
        g->children.push_back(std::move(idx));
        e = std::move(g);
        continue;
      }
      if (attr.type != TokenType::kName)
        return Syntax(line, "expected an attribute name after '.'");
      ExprPtr g = Make(Expr::Kind::kGetAttr, line);
      g->name = attr.value;
      g->children.push_back(std::move(e));
      e = std::move(g);
    } else if (IsOp("[")) {
      const int line = Next().line;
      absl::StatusOr<ExprPtr> sub = ParseSubscript(std::move(e), line);
      if (!sub.ok()) return sub;
      e = *std::move(sub);
    } else if (IsOp("(")) {
      const int line = Next().line;
      ExprPtr call = Make(Expr::Kind::kCall, line);
      if (e->kind == Expr::Kind::kName) {
        calls_.push_back({e->name, line});
      } else if (e->kind == Expr::Kind::kGetAttr) {
        if (!IsKnownMethod(e->name))
          return Unimplemented(line, absl::StrCat("method '", e->name, "'"));
      } else {
        return Unimplemented(line, "calling the result of an expression");
      }
      call->children.push_back(std::move(e));
      if (absl::Status s = ParseArgs(call.get()); !s.ok()) return s;
      e = std::move(call);
    } else {
      return e;
    }
  }
}

absl::StatusOr<ExprPtr> ExprParser::ParseSubscript(ExprPtr obj, int line) {
  ExprPtr parts[3];
  int n = 0;
  bool slice = false;
  while (true) {
    if (IsOp(":")) {
      slice = true;
      ++pos_;
      ++n;
      if (n > 2) return Syntax(line, "too many ':' in a slice");
      continue;
    }
    if (IsOp("]")) break;
    if (parts[n]) return Syntax(line, "expected ':' or ']'");
    absl::StatusOr<ExprPtr> p = ParseExpr();
    if (!p.ok()) return p;
    parts[n] = *std::move(p);
  }
  ++pos_;
  if (!slice) {
    if (!parts[0]) return Syntax(line, "empty subscript");
    ExprPtr g = Make(Expr::Kind::kGetItem, line);
    g->children.push_back(std::move(obj));
    g->children.push_back(std::move(parts[0]));
    return g;
  }
  ExprPtr s = Make(Expr::Kind::kSlice, line);
  s->children.push_back(std::move(obj));
  for (ExprPtr& p : parts) s->children.push_back(std::move(p));
  return s;
}

// '(' already consumed: positional and keyword arguments up to ')'.
absl::Status ExprParser::ParseArgs(Expr* call) {
  while (!IsOp(")")) {
    if (Peek().type == TokenType::kName && IsOp("=", 1)) {
      std::string key = Next().value;
      ++pos_;
      absl::StatusOr<ExprPtr> v = ParseExpr();
      if (!v.ok()) return v.status();
      call->kwargs.emplace_back(std::move(key), *std::move(v));
    } else {
      if (!call->kwargs.empty()) {
        return Syntax(Peek().line, "positional argument after a keyword argument");
      }
      absl::StatusOr<ExprPtr> v = ParseExpr();
      if (!v.ok()) return v.status();
      call->children.push_back(*std::move(v));
    }
    if (!IsOp(")")) {
      if (absl::Status s = Expect(","); !s.ok()) return s;
    }
  }
  ++pos_;
  return absl::OkStatus();
}

absl::StatusOr<ExprPtr> ExprParser::ParseFilterExpr(ExprPtr e) {
  while (true) {
    if (IsOp("|")) {
      const int line = Next().line;
      absl::StatusOr<std::string> name = ExpectName();
      if (!name.ok()) return name.status();
      if (!IsKnownFilter(*name)) return Unimplemented(line, absl::StrCat("filter '", *name, "'"));
      ExprPtr f = Make(Expr::Kind::kFilter, line);
      f->name = *name;
      f->children.push_back(std::move(e));
      if (IsOp("(")) {
        ++pos_;
        if (absl::Status s = ParseArgs(f.get()); !s.ok()) return s;
      }
      e = std::move(f);
    } else if (IsName("is")) {
      const int line = Next().line;
      ExprPtr t = Make(Expr::Kind::kTest, line);
      if (IsName("not")) {
        ++pos_;
        t->negated = true;
      }
      absl::StatusOr<std::string> name = ExpectName();
      if (!name.ok()) return name.status();
      if (!IsKnownTest(*name)) return Unimplemented(line, absl::StrCat("test '", *name, "'"));
      t->name = *name;
      t->children.push_back(std::move(e));
      if (IsOp("(")) {
        ++pos_;
        if (absl::Status s = ParseArgs(t.get()); !s.ok()) return s;
      } else if (Peek().type == TokenType::kString || Peek().type == TokenType::kInt ||
                 Peek().type == TokenType::kFloat || IsOp("[") || IsOp("{") ||
                 (Peek().type == TokenType::kName && !IsName("else") && !IsName("or") &&
                  !IsName("and") && !IsName("if") && !IsName("in") && !IsName("not") &&
                  !IsName("is"))) {
        // `x is sameas false`, `x is divisibleby 3`: one argument, no parentheses.
        absl::StatusOr<ExprPtr> arg = ParseUnary(false);
        if (!arg.ok()) return arg;
        t->children.push_back(*std::move(arg));
      }
      e = std::move(t);
    } else {
      return e;
    }
  }
}

}  // namespace hc::jinja::internal
