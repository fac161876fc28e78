// Parses template tokens into a syntax tree, and checks, before anything
// renders, that every filter, test, function and method the template names is
// one this engine implements: an unsupported construct is a load error naming
// it and its line, never a wrong prompt later.
#ifndef HC_COMMON_TEXT_JINJA_PARSER_H_
#define HC_COMMON_TEXT_JINJA_PARSER_H_

#include <vector>

#include "absl/status/statusor.h"
#include "common/text/jinja/ast.h"
#include "common/text/jinja/lexer.h"

namespace hc::jinja {

// INVALID_ARGUMENT for syntax errors; UNIMPLEMENTED for valid Jinja this
// engine does not support (both name the line).
absl::StatusOr<NodeList> Parse(const std::vector<Token>& tokens);

}  // namespace hc::jinja

#endif  // HC_COMMON_TEXT_JINJA_PARSER_H_
