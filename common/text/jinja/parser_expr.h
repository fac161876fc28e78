// The expression half of the parser (jinja2's precedence: conditional
// expressions, or, and, not, comparisons, + -, ~, * / // %, **, unary minus,
// then postfix access, calls, filters and tests), and the token cursor the
// statement parser (parser.cc) shares with it. Every filter, test and method
// named is checked here against builtins.h; called names are collected for
// the statement parser to check once every macro is known.
#ifndef HC_COMMON_TEXT_JINJA_PARSER_EXPR_H_
#define HC_COMMON_TEXT_JINJA_PARSER_EXPR_H_

#include <algorithm>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/text/jinja/ast.h"
#include "common/text/jinja/lexer.h"

namespace hc::jinja::internal {

// A name used where a call is made, checked once the whole template (and so
// every macro) is known.
struct CallSite {
  std::string name;
  int line;
};

class ExprParser {
 public:
  explicit ExprParser(const std::vector<Token>& tokens) : t_(tokens) {}

 protected:
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

  ExprPtr Make(Expr::Kind kind, int line);
  absl::StatusOr<ExprPtr> ParseTupleOrExpr(bool no_cond = false);
  absl::StatusOr<ExprPtr> ParseExpr();
  absl::StatusOr<ExprPtr> ParseBinaryChain(Expr::Kind kind, absl::string_view keyword,
                                           absl::StatusOr<ExprPtr> (ExprParser::*sub)());
  absl::StatusOr<ExprPtr> ParseOr();
  absl::StatusOr<ExprPtr> ParseAnd();
  absl::StatusOr<ExprPtr> ParseNot();
  absl::StatusOr<ExprPtr> ParseCompare();
  absl::StatusOr<ExprPtr> ParseBinaryOps(std::initializer_list<absl::string_view> ops,
                                         absl::StatusOr<ExprPtr> (ExprParser::*sub)());
  absl::StatusOr<ExprPtr> ParseMath1();
  absl::StatusOr<ExprPtr> ParseConcat();
  absl::StatusOr<ExprPtr> ParseMath2();
  absl::StatusOr<ExprPtr> ParsePow();
  absl::StatusOr<ExprPtr> ParseUnaryFiltered();
  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter);
  absl::StatusOr<ExprPtr> ParsePrimary();
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr e);
  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr obj, int line);
  absl::Status ParseArgs(Expr* call);
  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr e);

  const std::vector<Token>& t_;
  size_t pos_ = 0;
  std::vector<CallSite> calls_;
};

}  // namespace hc::jinja::internal

#endif  // HC_COMMON_TEXT_JINJA_PARSER_EXPR_H_
