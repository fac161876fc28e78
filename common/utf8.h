// UTF-8 helpers shared by the tokenizer and request validation. All
// functions are pure and thread-safe.
#ifndef HC_COMMON_UTF8_H_
#define HC_COMMON_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace hc::utf8 {

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Appends code point `cp` (REQUIRES: <= 0x10FFFF) encoded as UTF-8.
inline void Append(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Decodes the code point starting at s[i] (REQUIRES: i < s.size()). Returns
// its byte length, or 0 when the bytes there are not a valid, complete,
// shortest-form UTF-8 sequence (surrogates and > U+10FFFF are invalid).
inline size_t Decode(std::string_view s, size_t i, uint32_t* cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  size_t len;
  uint32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, min = 0x80, *cp = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, min = 0x800, *cp = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, min = 0x10000, *cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    *cp = (*cp << 6) | (b & 0x3F);
  }
  if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF)) return 0;
  return len;
}

inline bool IsValid(std::string_view s) {
  uint32_t cp;
  for (size_t i = 0; i < s.size();) {
    const size_t len = Decode(s, i, &cp);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

// Number of bytes at the end of `s` that form the start of a UTF-8 sequence
// which is still incomplete (could become valid with more bytes): 0..3.
inline size_t IncompleteSuffixLength(std::string_view s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto b = static_cast<unsigned char>(s[n - back]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t need = 0;
    if ((b & 0xE0) == 0xC0)
      need = 2;
    else if ((b & 0xF0) == 0xE0)
      need = 3;
    else if ((b & 0xF8) == 0xF0)
      need = 4;
    return need > back ? back : 0;
  }
  return 0;
}

// Converts bytes to valid UTF-8, replacing every maximal invalid subpart with
// U+FFFD (the behaviour of Rust's String::from_utf8_lossy, which Hugging Face
// tokenizers' decoders use).
inline std::string Lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  uint32_t cp;
  for (size_t i = 0; i < s.size();) {
    const size_t len = Decode(s, i, &cp);
    if (len > 0) {
      out.append(s.substr(i, len));
      i += len;
      continue;
    }
    // Skip the longest prefix that could have started a valid sequence.
    size_t skip = 1;
    const auto b0 = static_cast<unsigned char>(s[i]);
    size_t need = (b0 & 0xE0) == 0xC0 ? 2 : (b0 & 0xF0) == 0xE0 ? 3 : (b0 & 0xF8) == 0xF0 ? 4 : 1;
    if (b0 == 0xC0 || b0 == 0xC1 || b0 > 0xF4) need = 1;
    while (skip < need && i + skip < s.size()) {
      const auto b = static_cast<unsigned char>(s[i + skip]);
      if ((b & 0xC0) != 0x80) break;
      // Second-byte range restrictions (overlong / surrogate / > U+10FFFF).
      if (skip == 1 && ((b0 == 0xE0 && b < 0xA0) || (b0 == 0xED && b > 0x9F) ||
                        (b0 == 0xF0 && b < 0x90) || (b0 == 0xF4 && b > 0x8F))) {
        break;
      }
      ++skip;
    }
    Append(kReplacementChar, &out);
    i += skip;
  }
  return out;
}

}  // namespace hc::utf8

#endif  // HC_COMMON_UTF8_H_
