#include "common/text/jinja/pystr.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "common/utf8.h"

namespace hc::jinja {
namespace {

// The next code point at s[i] and its length; an invalid byte counts as one
// code point of its own value (so it is never whitespace).
size_t Next(std::string_view s, size_t i, uint32_t* cp) {
  const size_t n = utf8::Decode(s, i, cp);
  if (n != 0) return n;
  *cp = 0xFFFFFFFFu;
  return 1;
}

bool InChars(uint32_t cp, const std::string& chars) {
  for (size_t i = 0; i < chars.size();) {
    uint32_t c;
    i += Next(chars, i, &c);
    if (c == cp) return true;
  }
  return false;
}

}  // namespace

bool IsPySpace(uint32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x1C:
    case 0x1D:
    case 0x1E:
    case 0x1F:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

std::vector<size_t> CodePointOffsets(std::string_view s) {
  std::vector<size_t> out;
  out.reserve(s.size() + 1);
  uint32_t cp;
  for (size_t i = 0; i < s.size();) {
    out.push_back(i);
    i += Next(s, i, &cp);
  }
  out.push_back(s.size());
  return out;
}

size_t CodePointCount(std::string_view s) {
  size_t n = 0;
  uint32_t cp;
  for (size_t i = 0; i < s.size(); ++n) i += Next(s, i, &cp);
  return n;
}

bool IsAscii(std::string_view s) {
  for (const char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

std::string FloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  // Shortest round-trip digits in scientific form, then Python's layout:
  // fixed notation for exponents in [-4, 16), scientific otherwise.
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  const bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  const size_t e_pos = sci.find('e');
  std::string digits = sci.substr(0, e_pos);
  const int exp = std::stoi(sci.substr(e_pos + 1));
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  std::string out = neg ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out += "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    } else if (static_cast<size_t>(exp) + 1 >= digits.size()) {
      out += digits + std::string(static_cast<size_t>(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(exp) + 1) + "." +
             digits.substr(static_cast<size_t>(exp) + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char e[16];
  std::snprintf(e, sizeof(e), "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
  return out + e;
}

std::string StrRepr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    const size_t n = utf8::Decode(s, i, &cp);
    if (n == 0) {  // not producible from valid input; keep the byte
      out.push_back(s[i++]);
      continue;
    }
    if (cp == static_cast<uint32_t>(quote) || cp == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(cp));
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp < 0x20 || cp == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", cp);
      out += buf;
    } else if ((cp >= 0x80 && cp < 0xA0) || cp == 0xAD) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", cp);
      out += buf;
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
  out.push_back(quote);
  return out;
}

StripSpan PyStrip(std::string_view s, const std::string* chars, bool left, bool right) {
  auto strip_cp = [&](uint32_t cp) {
    return chars == nullptr ? IsPySpace(cp) : InChars(cp, *chars);
  };
  const std::vector<size_t> off = CodePointOffsets(s);
  size_t b = 0;
  size_t e = off.size() - 1;  // code point indices
  uint32_t cp;
  if (left) {
    while (b < e && (Next(s, off[b], &cp), strip_cp(cp))) ++b;
  }
  if (right) {
    while (e > b && (Next(s, off[e - 1], &cp), strip_cp(cp))) --e;
  }
  return {off[b], off[e]};
}

std::vector<StripSpan> PySplitWhitespace(std::string_view s, int64_t maxsplit) {
  std::vector<StripSpan> out;
  size_t i = 0;
  uint32_t cp;
  auto space_at = [&](size_t pos, size_t* len) {
    *len = Next(s, pos, &cp);
    return IsPySpace(cp);
  };
  size_t len;
  while (i < s.size()) {
    while (i < s.size() && space_at(i, &len)) i += len;
    if (i >= s.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      // The rest, with trailing whitespace removed, is the last field.
      const StripSpan rest = PyStrip(s.substr(i), nullptr, false, true);
      out.push_back({i, i + rest.end});
      return out;
    }
    const size_t start = i;
    while (i < s.size() && !space_at(i, &len)) i += len;
    out.push_back({start, i});
  }
  return out;
}

}  // namespace hc::jinja
