// Python's text semantics, as jinja2 templates observe them: strings are
// sequences of code points (len, indexing and slicing count code points, not
// bytes), str.isspace() decides what strip() and split() remove, and numbers
// print as Python's str()/repr() prints them.
//
// All functions are pure and thread-safe. Strings are UTF-8; input that is not
// valid UTF-8 is treated byte by byte (each invalid byte is one "code point").
#ifndef HC_COMMON_TEXT_JINJA_PYSTR_H_
#define HC_COMMON_TEXT_JINJA_PYSTR_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hc::jinja {

// Python's str.isspace() for one code point.
bool IsPySpace(uint32_t cp);

// Byte offsets of every code point start in `s`, plus s.size() at the end
// (so code point i spans [offsets[i], offsets[i + 1])).
std::vector<size_t> CodePointOffsets(std::string_view s);
size_t CodePointCount(std::string_view s);
bool IsAscii(std::string_view s);

// Python's repr(float) (shortest round-trip digits, "1.0", "1e+16", "nan",
// "inf") and str(int).
std::string FloatRepr(double d);
// Python's repr(str): single quotes unless the text has a ' and no ", with
// \n, \t, \r, \\, the quote and non-printable ASCII escaped.
std::string StrRepr(std::string_view s);

// Byte ranges of `s` kept by Python's s.strip(chars) / lstrip / rstrip
// (chars == nullptr: whitespace by IsPySpace).
struct StripSpan {
  size_t begin;
  size_t end;
};
StripSpan PyStrip(std::string_view s, const std::string* chars, bool left, bool right);

// Python's s.split() with no separator: runs of whitespace separate, empty
// fields are dropped; at most `maxsplit` splits when >= 0. Returns byte spans.
std::vector<StripSpan> PySplitWhitespace(std::string_view s, int64_t maxsplit);

}  // namespace hc::jinja

#endif  // HC_COMMON_TEXT_JINJA_PYSTR_H_
