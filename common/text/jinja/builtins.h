// What templates can do to values: Python operators, attribute and item
// access, iteration, and the filters, tests and str/dict/list methods this
// engine implements (the Is*Known* lists are what the parser checks a
// template against at load time).
//
// Errors are INVALID_ARGUMENT with Python's or jinja2's wording where it
// helps; the interpreter adds the template line.
#ifndef HC_COMMON_TEXT_JINJA_BUILTINS_H_
#define HC_COMMON_TEXT_JINJA_BUILTINS_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/text/jinja/value.h"

namespace hc::jinja {

bool IsKnownFilter(absl::string_view name);
bool IsKnownTest(absl::string_view name);
bool IsKnownMethod(absl::string_view name);
// raise_exception, strftime_now, namespace, dict, range.
bool IsKnownGlobal(absl::string_view name);

struct CallArgs {
  ValueList args;
  std::vector<std::pair<std::string, Value>> kwargs;

  // Argument `index` or keyword `name`; `fallback` when neither is given.
  const Value& Get(size_t index, absl::string_view name, const Value& fallback) const;
};

// ---- operations.cc ----
// `obj.name`: a method of a str/dict/list, else the dict member or namespace
// attribute; a missing one is Undefined. Undefined.name is an error.
absl::StatusOr<Value> GetAttr(const Value& obj, absl::string_view name);
// `obj[key]`: list/str index (negative counts from the end), dict member;
// missing is Undefined.
absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
// `obj[start:stop:step]` on str, list and tuple (null: omitted).
absl::StatusOr<Value> GetSlice(const Value& obj, const Value* start, const Value* stop,
                               const Value* step);
// + - * / // % ** ~
absl::StatusOr<Value> BinaryOp(absl::string_view op, const Value& a, const Value& b);
absl::StatusOr<Value> Negate(const Value& v);
// == != < <= > >= in, not in
absl::StatusOr<bool> Compare(absl::string_view op, const Value& a, const Value& b);
// The items `for` iterates: list/tuple items, dict keys, str characters;
// Undefined iterates as empty.
absl::StatusOr<ValueList> Iterate(const Value& v);
// len(v) (Undefined: 0).
absl::StatusOr<int64_t> Length(const Value& v);

// ---- filters.cc ----
absl::StatusOr<Value> ApplyFilter(absl::string_view name, const Value& operand,
                                  const CallArgs& args);
absl::StatusOr<bool> ApplyTest(absl::string_view name, const Value& operand, const CallArgs& args);

// ---- methods.cc ----
absl::StatusOr<Value> CallMethod(const Value& self, absl::string_view name, const CallArgs& args);
// Whether `name` is a method of values of self's type (str, dict, list).
bool HasMethod(const Value& self, absl::string_view name);

// Python str.upper()/lower() etc. on ASCII text; INVALID_ARGUMENT for other
// text (full Unicode case mapping is not implemented, and a wrong case would
// be a wrong prompt).
absl::StatusOr<Text> CaseMap(const Text& t, absl::string_view how);

}  // namespace hc::jinja

#endif  // HC_COMMON_TEXT_JINJA_BUILTINS_H_
