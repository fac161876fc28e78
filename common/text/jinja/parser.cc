#include "common/text/jinja/parser.h"

#include <set>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/text/jinja/builtins.h"

namespace hc::jinja {
namespace {

// A name used where a call is made, checked once the whole template (and so
// every macro) is known.
struct CallSite {
  std::string name;
  int line;
};

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : t_(tokens) {}

  absl::StatusOr<NodeList> Run() {
    NodeList body;
    std::string end_tag;
    if (absl::Status s = ParseBody({}, &body, &end_tag); !s.ok()) return s;
    for (const CallSite& c : calls_) {
      if (!IsKnownGlobal(c.name) && macros_.count(c.name) == 0) {
        return Unimplemented(c.line, absl::StrCat("function '", c.name, "'"));
      }
    }
    return body;
  }

 private:
  const Token& Peek(size_t k = 0) const { return t_[std::min(pos_ + k, t_.size() - 1)]; }
  const Token& Next() { return t_[std::min(pos_++, t_.size() - 1)]; }
  bool IsOp(absl::string_view op, size_t k = 0) const {
    return Peek(k).type == TokenType::kOp && Peek(k).value == op;
  }
  bool IsName(absl::string_view name, size_t k = 0) const {
    return Peek(k).type == TokenType::kName && Peek(k).value == name;
  }
  static absl::Status Syntax(int line, absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("chat template line ", line, ": ", what));
  }
  static absl::Status Unimplemented(int line, absl::string_view what) {
    return absl::UnimplementedError(
        absl::StrCat("chat template line ", line, ": ", what, " is not supported"));
  }
  absl::Status Expect(absl::string_view op) {
    if (!IsOp(op)) {
      return Syntax(Peek().line, absl::StrCat("expected '", op, "', got '", Peek().value, "'"));
    }
    ++pos_;
    return absl::OkStatus();
  }
  absl::Status ExpectBlockEnd() {
    if (Peek().type != TokenType::kBlockEnd) {
      return Syntax(Peek().line, absl::StrCat("expected end of tag, got '", Peek().value, "'"));
    }
    ++pos_;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Peek().type != TokenType::kName) {
      return Syntax(Peek().line, absl::StrCat("expected a name, got '", Peek().value, "'"));
    }
    return Next().value;
  }

  // Statements until a block tag named in `ends`; its name goes to *end_tag
  // (consumed up to the tag name).
  absl::Status ParseBody(const std::set<std::string>& ends, NodeList* out, std::string* end_tag) {
    while (true) {
      const Token& tok = Peek();
      switch (tok.type) {
        case TokenType::kEnd:
          if (ends.empty()) return absl::OkStatus();
          return Syntax(tok.line, absl::StrCat("missing {% ", *ends.begin(), " %}"));
        case TokenType::kText: {
          auto n = std::make_unique<Node>();
          n->kind = Node::Kind::kText;
          n->line = tok.line;
          n->text = tok.value;
          out->push_back(std::move(n));
          ++pos_;
          break;
        }
        case TokenType::kVarBegin: {
          ++pos_;
          auto n = std::make_unique<Node>();
          n->kind = Node::Kind::kPrint;
          n->line = tok.line;
          absl::StatusOr<ExprPtr> e = ParseTupleOrExpr();
          if (!e.ok()) return e.status();
          n->expr = *std::move(e);
          if (Peek().type != TokenType::kVarEnd) {
            return Syntax(Peek().line, absl::StrCat("expected '}}', got '", Peek().value, "'"));
          }
          ++pos_;
          out->push_back(std::move(n));
          break;
        }
        case TokenType::kBlockBegin: {
          const Token& name = Peek(1);
          if (name.type != TokenType::kName) return Syntax(name.line, "expected a tag name");
          if (ends.count(name.value) != 0) {
            pos_ += 2;
            *end_tag = name.value;
            return absl::OkStatus();
          }
          pos_ += 2;
          absl::StatusOr<std::unique_ptr<Node>> n = ParseStatement(name.value, name.line);
          if (!n.ok()) return n.status();
          out->push_back(*std::move(n));
          break;
        }
        default:
          return Syntax(tok.line, absl::StrCat("unexpected '", tok.value, "'"));
      }
    }
  }

  absl::StatusOr<std::unique_ptr<Node>> ParseStatement(const std::string& tag, int line) {
    auto n = std::make_unique<Node>();
    n->line = line;
    absl::Status s;
    if (tag == "if" || tag == "elif") {
      s = ParseIf(n.get());
    } else if (tag == "for") {
      s = ParseFor(n.get());
    } else if (tag == "set") {
      s = ParseSet(n.get());
    } else if (tag == "macro") {
      s = ParseMacro(n.get());
    } else if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) return Syntax(line, absl::StrCat("'", tag, "' outside a loop"));
      n->kind = tag == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
      s = ExpectBlockEnd();
    } else if (tag == "generation") {
      n->kind = Node::Kind::kBlock;
      s = ExpectBlockEnd();
      std::string end;
      if (s.ok()) s = ParseBody({"endgeneration"}, &n->body, &end);
      if (s.ok()) s = ExpectBlockEnd();
    } else if (tag == "endif" || tag == "endfor" || tag == "else" || tag == "endmacro" ||
               tag == "endset" || tag == "endgeneration") {
      return Syntax(line, absl::StrCat("unexpected {% ", tag, " %}"));
    } else {
      return Unimplemented(line, absl::StrCat("the {% ", tag, " %} tag"));
    }
    if (!s.ok()) return s;
    return n;
  }

  absl::Status ParseIf(Node* n) {
    n->kind = Node::Kind::kIf;
    absl::StatusOr<ExprPtr> cond = ParseExpr();
    if (!cond.ok()) return cond.status();
    n->expr = *std::move(cond);
    if (absl::Status s = ExpectBlockEnd(); !s.ok()) return s;
    std::string end;
    if (absl::Status s = ParseBody({"elif", "else", "endif"}, &n->body, &end); !s.ok()) return s;
    if (end == "elif") {
      auto elif = std::make_unique<Node>();
      elif->line = Peek().line;
      if (absl::Status s = ParseIf(elif.get()); !s.ok()) return s;
      n->else_body.push_back(std::move(elif));
      return absl::OkStatus();
    }
    if (absl::Status s = ExpectBlockEnd(); !s.ok()) return s;
    if (end == "else") {
      if (absl::Status s = ParseBody({"endif"}, &n->else_body, &end); !s.ok()) return s;
      return ExpectBlockEnd();
    }
    return absl::OkStatus();
  }

  absl::Status ParseFor(Node* n) {
    n->kind = Node::Kind::kFor;
    do {
      absl::StatusOr<std::string> name = ExpectName();
      if (!name.ok()) return name.status();
      n->targets.push_back(*name);
    } while (IsOp(",") && (++pos_, true));
    if (!IsName("in")) return Syntax(Peek().line, "expected 'in' in for loop");
    ++pos_;
    absl::StatusOr<ExprPtr> iter = ParseTupleOrExpr(/*no_cond=*/true);
    if (!iter.ok()) return iter.status();
    n->expr = *std::move(iter);
    if (IsName("if")) {
      ++pos_;
      absl::StatusOr<ExprPtr> f = ParseExpr();
      if (!f.ok()) return f.status();
      n->filter = *std::move(f);
    }
    if (IsName("recursive")) return Unimplemented(Peek().line, "recursive loops");
    if (absl::Status s = ExpectBlockEnd(); !s.ok()) return s;
    ++loop_depth_;
    std::string end;
    absl::Status s = ParseBody({"else", "endfor"}, &n->body, &end);
    --loop_depth_;
    if (!s.ok()) return s;
    if (absl::Status s2 = ExpectBlockEnd(); !s2.ok()) return s2;
    if (end == "else") {
      if (absl::Status s2 = ParseBody({"endfor"}, &n->else_body, &end); !s2.ok()) return s2;
      return ExpectBlockEnd();
    }
    return absl::OkStatus();
  }

  absl::Status ParseSet(Node* n) {
    absl::StatusOr<std::string> name = ExpectName();
    if (!name.ok()) return name.status();
    n->targets.push_back(*name);
    if (IsOp(".")) {
      ++pos_;
      absl::StatusOr<std::string> attr = ExpectName();
      if (!attr.ok()) return attr.status();
      n->attr = *attr;
    } else {
      while (IsOp(",")) {
        ++pos_;
        absl::StatusOr<std::string> more = ExpectName();
        if (!more.ok()) return more.status();
        n->targets.push_back(*more);
      }
    }
    if (Peek().type == TokenType::kBlockEnd) {
      if (n->targets.size() != 1 || !n->attr.empty()) {
        return Unimplemented(n->line, "a block set of several names or an attribute");
      }
      ++pos_;
      n->kind = Node::Kind::kSetBlock;
      std::string end;
      if (absl::Status s = ParseBody({"endset"}, &n->body, &end); !s.ok()) return s;
      return ExpectBlockEnd();
    }
    n->kind = Node::Kind::kSet;
    if (absl::Status s = Expect("="); !s.ok()) return s;
    absl::StatusOr<ExprPtr> value = ParseTupleOrExpr();
    if (!value.ok()) return value.status();
    n->expr = *std::move(value);
    return ExpectBlockEnd();
  }

  absl::Status ParseMacro(Node* n) {
    n->kind = Node::Kind::kMacro;
    n->macro = std::make_unique<MacroDef>();
    absl::StatusOr<std::string> name = ExpectName();
    if (!name.ok()) return name.status();
    n->macro->name = *name;
    macros_.insert(*name);
    if (absl::Status s = Expect("("); !s.ok()) return s;
    while (!IsOp(")")) {
      absl::StatusOr<std::string> p = ExpectName();
      if (!p.ok()) return p.status();
      n->macro->params.push_back(*p);
      ExprPtr def;
      if (IsOp("=")) {
        ++pos_;
        absl::StatusOr<ExprPtr> d = ParseExpr();
        if (!d.ok()) return d.status();
        def = *std::move(d);
      }
      n->macro->defaults.push_back(std::move(def));
      if (!IsOp(")")) {
        if (absl::Status s = Expect(","); !s.ok()) return s;
      }
    }
    ++pos_;
    if (absl::Status s = ExpectBlockEnd(); !s.ok()) return s;
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    std::string end;
    absl::Status s = ParseBody({"endmacro"}, &n->macro->body, &end);
    loop_depth_ = saved_loops;
    if (!s.ok()) return s;
    if (Peek().type == TokenType::kName) ++pos_;  // {% endmacro name %}
    return ExpectBlockEnd();
  }

  // ---- Expressions (jinja2's precedence) ----

  ExprPtr Make(Expr::Kind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // expr (',' expr)* — a bare tuple where jinja2 allows one.
  absl::StatusOr<ExprPtr> ParseTupleOrExpr(bool no_cond = false) {
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

  absl::StatusOr<ExprPtr> ParseExpr() {
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

  absl::StatusOr<ExprPtr> ParseBinaryChain(Expr::Kind kind, absl::string_view keyword,
                                           absl::StatusOr<ExprPtr> (Parser::*sub)()) {
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
  absl::StatusOr<ExprPtr> ParseOr() {
    return ParseBinaryChain(Expr::Kind::kOr, "or", &Parser::ParseAnd);
  }
  absl::StatusOr<ExprPtr> ParseAnd() {
    return ParseBinaryChain(Expr::Kind::kAnd, "and", &Parser::ParseNot);
  }

  absl::StatusOr<ExprPtr> ParseNot() {
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

  absl::StatusOr<ExprPtr> ParseCompare() {
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

  absl::StatusOr<ExprPtr> ParseBinaryOps(std::initializer_list<absl::string_view> ops,
                                         absl::StatusOr<ExprPtr> (Parser::*sub)()) {
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
  absl::StatusOr<ExprPtr> ParseMath1() { return ParseBinaryOps({"+", "-"}, &Parser::ParseConcat); }
  absl::StatusOr<ExprPtr> ParseConcat() { return ParseBinaryOps({"~"}, &Parser::ParseMath2); }
  absl::StatusOr<ExprPtr> ParseMath2() {
    return ParseBinaryOps({"*", "/", "//", "%"}, &Parser::ParsePow);
  }
  absl::StatusOr<ExprPtr> ParsePow() { return ParseBinaryOps({"**"}, &Parser::ParseUnaryFiltered); }

  absl::StatusOr<ExprPtr> ParseUnaryFiltered() { return ParseUnary(true); }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter) {
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

  absl::StatusOr<ExprPtr> ParsePrimary() {
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

  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr e) {
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

  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr obj, int line) {
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
  absl::Status ParseArgs(Expr* call) {
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

  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr e) {
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

  const std::vector<Token>& t_;
  size_t pos_ = 0;
  int loop_depth_ = 0;
  std::set<std::string> macros_;
  std::vector<CallSite> calls_;
};

}  // namespace

absl::StatusOr<NodeList> Parse(const std::vector<Token>& tokens) { return Parser(tokens).Run(); }

}  // namespace hc::jinja
