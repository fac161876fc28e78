#include "common/text/jinja/parser.h"

#include <set>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/text/jinja/builtins.h"
#include "common/text/jinja/parser_expr.h"

namespace hc::jinja {
namespace {

// The statement half of the parser: text, {{ }} and the block tags with their
// bodies; expressions are ExprParser's. Names called as functions are checked
// at the end, when every macro is known.
class Parser : public internal::ExprParser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : ExprParser(tokens) {}

  absl::StatusOr<NodeList> Run() {
    NodeList body;
    std::string end_tag;
    if (absl::Status s = ParseBody({}, &body, &end_tag); !s.ok()) return s;
    for (const internal::CallSite& c : calls_) {
      if (!IsKnownGlobal(c.name) && macros_.count(c.name) == 0) {
        return Unimplemented(c.line, absl::StrCat("function '", c.name, "'"));
      }
    }
    return body;
  }

 private:
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

  int loop_depth_ = 0;
  std::set<std::string> macros_;
};

}  // namespace

absl::StatusOr<NodeList> Parse(const std::vector<Token>& tokens) { return Parser(tokens).Run(); }

}  // namespace hc::jinja
