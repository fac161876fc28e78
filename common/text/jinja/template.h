// A Jinja template engine for Hugging Face chat templates: our own
// interpreter of the Jinja subset those templates use, rendering exactly as
// transformers' apply_chat_template does with jinja2 (ImmutableSandboxedEnvironment,
// trim_blocks, lstrip_blocks, loop controls, the globals raise_exception,
// strftime_now, namespace and dict, and transformers' own `tojson`).
//
// Load time checks everything that can be checked: syntax, and that every
// filter, test, function and method named is implemented (UNIMPLEMENTED
// naming the construct and its line otherwise). Rendering errors (the
// template's raise_exception, type errors, undefined values used as values)
// are INVALID_ARGUMENT with the template's message. Rendering is bounded by
// RenderOptions.
//
// Thread-safety: a Template is immutable after Parse; Render may run
// concurrently.
#ifndef HC_COMMON_TEXT_JINJA_TEMPLATE_H_
#define HC_COMMON_TEXT_JINJA_TEMPLATE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/text/jinja/ast.h"
#include "common/text/jinja/value.h"

namespace hc::jinja {

struct RenderOptions {
  size_t max_output_bytes = 64u << 20;
  // Loop iterations (all loops of one rendering together, range() sizes too).
  uint64_t max_loop_iterations = 1u << 22;
  int max_macro_depth = 64;
};

struct Rendered {
  std::string text;
  // Byte ranges of `text` the template wrote itself (not copied from the
  // data in the context), sorted and disjoint.
  std::vector<std::pair<size_t, size_t>> template_ranges;
};

using Context = std::vector<std::pair<std::string, Value>>;

class Template {
 public:
  static absl::StatusOr<std::unique_ptr<Template>> Parse(std::string_view source);

  // Renders with the template's variables bound to `context` (later entries
  // win); the globals come first, so the context may shadow them.
  absl::StatusOr<Rendered> Render(const Context& context, const RenderOptions& options = {}) const;

  const std::string& source() const { return source_; }

 private:
  Template(std::string source, NodeList body)
      : source_(std::move(source)), body_(std::move(body)) {}

  std::string source_;
  NodeList body_;
};

}  // namespace hc::jinja

#endif  // HC_COMMON_TEXT_JINJA_TEMPLATE_H_
