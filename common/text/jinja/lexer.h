// Splits a template source into text and tag tokens with the whitespace rules
// of the environment transformers renders chat templates in:
// trim_blocks=True (the first newline after a block or comment tag goes),
// lstrip_blocks=True (spaces and tabs before a block or comment tag on its own
// line go), `-` on a tag strips all whitespace on that side, `+` turns the
// block rules off for that side; newlines are normalised to "\n" and one
// trailing newline of the source is dropped (keep_trailing_newline=False).
#ifndef HC_COMMON_TEXT_JINJA_LEXER_H_
#define HC_COMMON_TEXT_JINJA_LEXER_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace hc::jinja {

enum class TokenType {
  kText,        // literal template text (value: the text)
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,        // identifier or keyword
  kString,      // string literal (value: decoded)
  kInt,         // integer literal (value: digits)
  kFloat,       // float literal (value: as written, underscores removed)
  kOp,          // operator or punctuation
  kEnd,         // end of source
};

struct Token {
  TokenType type;
  std::string value;
  int line = 1;
};

// INVALID_ARGUMENT naming the line for an unterminated tag, comment or
// string, or a character that is no token.
absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source);

}  // namespace hc::jinja

#endif  // HC_COMMON_TEXT_JINJA_LEXER_H_
