// The syntax tree of a parsed template: expressions (Expr) and statements
// (Node). Built once by the parser, then only read, so one parsed template
// renders concurrently.
#ifndef HC_COMMON_TEXT_JINJA_AST_H_
#define HC_COMMON_TEXT_JINJA_AST_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/text/jinja/value.h"

namespace hc::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,   // literal
    kName,      // name
    kList,      // children: items
    kTuple,     // children: items
    kDict,      // children: key0, value0, key1, value1, ...
    kGetAttr,   // children[0].name
    kGetItem,   // children[0][children[1]]
    kSlice,     // children[0][children[1]:children[2]:children[3]] (null: omitted)
    kCall,      // children[0](children[1..], kwargs)
    kFilter,    // children[0] | name(children[1..], kwargs)
    kTest,      // children[0] is [not] name(children[1..], kwargs)
    kUnary,     // name ("-", "+", "not") children[0]
    kBinary,    // children[0] name children[1]: + - * / // % ** ~
    kCompare,   // children[0] ops[0] children[1] ops[1] ... (chained)
    kAnd,       // children[0] and children[1]
    kOr,        // children[0] or children[1]
    kCondExpr,  // children[0] if children[1] else children[2] (null: Undefined)
  };
  Kind kind;
  int line = 0;
  Value literal;
  std::string name;
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negated = false;
};

struct Node;
using NodeList = std::vector<std::unique_ptr<Node>>;

struct MacroDef {
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // per param; null: required
  NodeList body;
};

struct Node {
  enum class Kind {
    kText,      // text
    kPrint,     // {{ expr }}
    kIf,        // if expr: body else else_body (elif: an If alone in else_body)
    kFor,       // for targets in expr [if filter]: body else else_body
    kSet,       // set targets = expr, or set targets[0].attr = expr (attr non-empty)
    kSetBlock,  // set targets[0] %}body{% endset
    kMacro,     // macro definition
    kBreak,
    kContinue,
    kBlock,  // body rendered in place ({% generation %})
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;
  std::vector<std::string> targets;
  std::string attr;
  NodeList body;
  NodeList else_body;
  std::unique_ptr<MacroDef> macro;
};

}  // namespace hc::jinja

#endif  // HC_COMMON_TEXT_JINJA_AST_H_
