// Batch renderer for the differential test against Python's jinja2
// (jinja_differential_test.py): reads a template file named on the command
// line, then one JSON object per stdin line, the template's variables
// ("messages", "tools" and "documents" are the caller's data, everything else
// is template-side like bos_token), and writes one JSON line per input:
// {"text": ..., "template_ranges": [[b, e], ...]} or {"error": ...}.
#include <iostream>
#include <string>

#include "common/file_util.h"
#include "common/json.h"
#include "common/text/jinja/template.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: jinja_render_driver TEMPLATE_FILE < contexts.jsonl\n";
    return 2;
  }
  absl::StatusOr<std::string> source = hc::ReadFileToString(argv[1]);
  if (!source.ok()) {
    std::cerr << source.status() << "\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<hc::jinja::Template>> tmpl = hc::jinja::Template::Parse(*source);
  std::string line;
  while (std::getline(std::cin, line)) {
    hc::json::Value out = hc::json::Value::MakeObject();
    absl::StatusOr<hc::json::Value> ctx = hc::json::Parse(line);
    if (!tmpl.ok()) {
      out.Set("error", hc::json::Value::String("load: " + tmpl.status().ToString()));
    } else if (!ctx.ok() || !ctx->is_object()) {
      out.Set("error", hc::json::Value::String("bad input line"));
    } else {
      hc::jinja::Context context;
      for (const auto& [key, value] : ctx->AsObject()) {
        const bool data = key == "messages" || key == "tools" || key == "documents";
        context.emplace_back(key, hc::jinja::Value::FromJson(value, data));
      }
      absl::StatusOr<hc::jinja::Rendered> r = (*tmpl)->Render(context);
      if (r.ok()) {
        out.Set("text", hc::json::Value::String(r->text));
        hc::json::Value ranges = hc::json::Value::MakeArray();
        for (const auto& [b, e] : r->template_ranges) {
          ranges.Append(
              hc::json::Value::MakeArray({hc::json::Value::Int(static_cast<int64_t>(b)),
                                          hc::json::Value::Int(static_cast<int64_t>(e))}));
        }
        out.Set("template_ranges", std::move(ranges));
      } else {
        out.Set("error", hc::json::Value::String(std::string(r.status().message())));
        out.Set("code", hc::json::Value::String(absl::StatusCodeToString(r.status().code())));
      }
    }
    std::cout << hc::json::Serialize(out) << "\n";
  }
  return 0;
}
