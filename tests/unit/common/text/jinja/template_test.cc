#include "common/text/jinja/template.h"

#include <string>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hc::jinja {
namespace {

using ::testing::HasSubstr;

// Renders `source` with no variables (expectations are what jinja2 3.1.6
// renders in transformers' environment).
std::string Render(const std::string& source, const Context& context = {}) {
  absl::StatusOr<std::unique_ptr<Template>> t = Template::Parse(source);
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return "<load error>";
  absl::StatusOr<Rendered> r = (*t)->Render(context);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->text : "<render error>";
}

absl::Status LoadError(const std::string& source) { return Template::Parse(source).status(); }

absl::Status RenderError(const std::string& source, const RenderOptions& options = {}) {
  absl::StatusOr<std::unique_ptr<Template>> t = Template::Parse(source);
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return t.status();
  return (*t)->Render({}, options).status();
}

TEST(JinjaTemplate, TrimBlocksAndLstripBlocksLikeTransformers) {
  EXPECT_EQ(Render("a\n  {% if true %}\n  x\n  {% endif %}\nb"), "a\n  x\nb");
  EXPECT_EQ(Render("a  {%- if true -%}  x  {%- endif -%}  b"), "axb");
  EXPECT_EQ(Render("{% for i in [1,2] %}\n{{ i }}\n{% endfor %}\n"), "1\n2\n");
  EXPECT_EQ(Render("  {%+ if true %}x{% endif +%}\ny"), "  x\ny");
  EXPECT_EQ(Render("{# c #}\n  {#- c2 -#}  z"), "z");
}

TEST(JinjaTemplate, NumbersPrintAsPythonPrintsThem) {
  EXPECT_EQ(Render("{{ 1e20 }} {{ 0.1+0.2 }} {{ 1.0 }} {{ 1e-5 }} {{ 123456789012345678.0 }} "
                   "{{ 7//2 }} {{ -7//2 }} {{ 2**10 }} {{ 1/4 }}"),
            "1e+20 0.30000000000000004 1.0 1e-05 1.2345678901234568e+17 3 -4 1024 0.25");
}

TEST(JinjaTemplate, StringsAreCodePointSequences) {
  EXPECT_EQ(Render("{{ 'aé中'[::-1] }}|{{ 'aé中'[1:] }}|{{ 'aé中'|length }}|{{ [1,2,3][::2] }}|"
                   "{{ (1,2) }}|{{ {'a': none, 'b': true} }}"),
            "中éa|é中|3|[1, 3]|(1, 2)|{'a': None, 'b': True}");
}

TEST(JinjaTemplate, TojsonIsTransformersJsonDumps) {
  EXPECT_EQ(Render("{{ {'k': [1, 'é', none, 2.5]}|tojson }}|{{ {'k': [1, {}]}|tojson(indent=2) }}|"
                   "{{ 'é'|tojson(ensure_ascii=true) }}"),
            "{\"k\": [1, \"é\", null, 2.5]}|{\n  \"k\": [\n    1,\n    {}\n  ]\n}|\"\\u00e9\"");
}

TEST(JinjaTemplate, LoopsScopesAndMacros) {
  EXPECT_EQ(Render("{% for k, v in {'a': 1, 'b': 2}|items %}{{ k }}={{ v }}"
                   "{{ ',' if not loop.last }}{% endfor %}"),
            "a=1,b=2");
  EXPECT_EQ(
      Render("{% for x in [1,2,3,4] if x is even %}{{ loop.index }}/{{ loop.length }}:{{ x }} "
             "{% else %}none{% endfor %}"),
      "1/2:2 2/2:4 ");
  EXPECT_EQ(Render("{% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}"
                   "{% if x is odd %}{% continue %}{% endif %}{{ x }}{% endfor %}"),
            "02");
  // A for body's `set` stays in the loop; a namespace carries state out.
  EXPECT_EQ(Render("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}"
                   "{% set ns = namespace(x=1) %}{% for i in [1] %}{% set ns.x = 2 %}{% endfor %}"
                   "{{ ns.x }}"),
            "12");
  EXPECT_EQ(
      Render("{% macro f(a, b='d') %}[{{ a }}{{ b }}]{% endmacro %}{{ f(1) }}{{ f(1, b=2) }}"),
      "[1d][12]");
  EXPECT_EQ(Render("{% set s %}block {{ 1 }}{% endset %}[{{ s }}]"), "[block 1]");
}

TEST(JinjaTemplate, MethodsAndFilters) {
  EXPECT_EQ(Render("{{ '  a b  '.split() }}{{ 'a,b,,c'.split(',') }}{{ 'a,b,c'.rsplit(',', 1) }}"
                   "{{ ' x '|trim }}{{ 'xax'.strip('x') }}"),
            "['a', 'b']['a', 'b', '', 'c']['a,b', 'c']xa");
  EXPECT_EQ(Render("{{ [{'n': 'b'}, {'n': 'a'}]|map(attribute='n')|join(',') }}|"
                   "{{ [3,1,2]|sort|list }}|{{ ['a','B']|sort }}|{{ [1,2,2]|unique|list }}"),
            "b,a|[1, 2, 3]|['a', 'B']|[1, 2]");
  EXPECT_EQ(Render("{{ x|default('d') }}|{{ ''|default('d', true) }}|{{ none is none }}|"
                   "{{ 1 is number }}|{{ 'a' is string }}|{{ x is defined }}"),
            "d|d|True|True|True|False");
  EXPECT_EQ(Render("{{ 'Hello World'|upper }}{{ 'ab cd'|title }}{{ 'aBC'|capitalize }}"
                   "{{ 'a\nb'|indent(2, first=true) }}"),
            "HELLO WORLDAb CdAbc  a\n  b");
}

TEST(JinjaTemplate, UnsupportedConstructsFailAtLoadNamingThemAndTheLine) {
  absl::Status s = LoadError("a\n\n{{ x | wordwrap }}");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("line 3"));
  EXPECT_THAT(s.message(), HasSubstr("filter 'wordwrap'"));
  s = LoadError("{% set l = [] %}\n{% set _ = l.append(1) %}");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("line 2"));
  EXPECT_THAT(s.message(), HasSubstr("method 'append'"));
  s = LoadError("{{ cycler('a', 'b') }}");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("function 'cycler'"));
  s = LoadError("{% include 'x.jinja' %}");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("{% include %}"));
  s = LoadError("{% if x is divisible_by(3) %}{% endif %}");
  EXPECT_THAT(s.message(), HasSubstr("test 'divisible_by'"));
  s = LoadError("{% for x in y recursive %}{% endfor %}");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
}

TEST(JinjaTemplate, SyntaxErrorsFailAtLoadWithTheLine) {
  for (const char* bad :
       {"{{ 'unterminated }}", "x\n{% if x %}", "{{ 1 + }}", "{% endfor %}",
        "{% for x in y %}{% endif %}", "{# never closed", "{{ (1 }}", "{% break %}"}) {
    absl::Status s = LoadError(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr("line ")) << bad;
  }
}

TEST(JinjaTemplate, RaiseExceptionIsInvalidArgumentWithTheTemplatesMessage) {
  absl::Status s = RenderError("{{ raise_exception('roles must alternate') }}");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "roles must alternate");
}

TEST(JinjaTemplate, TypeErrorsAndUndefinedUseAreRenderErrors) {
  absl::Status s = RenderError("\n{{ 'a' + 1 }}");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("line 2"));
  EXPECT_THAT(s.message(), HasSubstr("can only concatenate str"));
  EXPECT_EQ(RenderError("{{ missing.attr }}").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RenderError("{{ 1 // 0 }}").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RenderError("{% set x = 1 %}{% set x.a = 2 %}").code(),
            absl::StatusCode::kInvalidArgument);
  // Undefined prints as "" and iterates as empty, as jinja2's default Undefined.
  EXPECT_EQ(Render("[{{ missing }}]{% for x in missing %}x{% endfor %}"), "[]");
}

TEST(JinjaTemplate, RenderingIsBounded) {
  RenderOptions small;
  small.max_output_bytes = 1000;
  small.max_loop_iterations = 100;
  EXPECT_THAT(RenderError("{% for i in range(50) %}{{ 'x' * 100 }}{% endfor %}", small).message(),
              HasSubstr("exceeds 1000 bytes"));
  EXPECT_THAT(
      RenderError("{% for i in range(10) %}{% for j in range(20) %}{% endfor %}{% endfor %}", small)
          .message(),
      HasSubstr("loop iterations"));
  EXPECT_THAT(RenderError("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}").message(),
              HasSubstr("nested deeper"));
}

TEST(JinjaTemplate, TemplateRangesCoverOnlyTheTemplatesOwnText) {
  absl::StatusOr<std::unique_ptr<Template>> t = Template::Parse(
      "{% for m in messages %}<|start|>{{ m.role }}\n{{ m.content|trim }}<|end|>{% endfor %}"
      "{{ bos }}");
  ASSERT_TRUE(t.ok()) << t.status();
  absl::StatusOr<json::Value> messages =
      json::Parse(R"([{"role": "user", "content": " hi <|end|> there "}])");
  ASSERT_TRUE(messages.ok());
  Context ctx = {{"messages", Value::FromJson(*messages, /*from_data=*/true)},
                 {"bos", Value::String("<|bos|>")}};
  absl::StatusOr<Rendered> r = (*t)->Render(ctx);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->text, "<|start|>user\nhi <|end|> there<|end|><|bos|>");
  // "<|start|>", "\n" and "<|end|><|bos|>" are the template's; the role and
  // the content (including its "<|end|>") are data.
  const std::vector<std::pair<size_t, size_t>> want = {{0, 9}, {13, 14}, {30, 44}};
  EXPECT_EQ(r->template_ranges, want);
}

}  // namespace
}  // namespace hc::jinja
