#include "common/text/jinja/template.h"

#include "common/text/jinja/lexer.h"
#include "common/text/jinja/parser.h"

namespace hc::jinja {

absl::StatusOr<std::unique_ptr<Template>> Template::Parse(std::string_view source) {
  absl::StatusOr<std::vector<Token>> tokens = Tokenize(source);
  if (!tokens.ok()) return tokens.status();
  absl::StatusOr<NodeList> body = jinja::Parse(*tokens);
  if (!body.ok()) return body.status();
  return std::unique_ptr<Template>(new Template(std::string(source), *std::move(body)));
}

}  // namespace hc::jinja
