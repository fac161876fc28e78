#include "common/text/byte_level.h"

#include <memory>

#include "absl/container/flat_hash_map.h"
#include "common/text/unicode_regex.h"
#include "common/utf8.h"

namespace hc {
namespace {

struct ByteMaps {
  std::string byte_to_utf8[256];
  absl::flat_hash_map<uint32_t, uint8_t> cp_to_byte;
  ByteMaps() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : 256u + n++;
      utf8::Append(cp, &byte_to_utf8[b]);
      cp_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};

const ByteMaps& Maps() {
  static const ByteMaps* maps = new ByteMaps();
  return *maps;
}

const UnicodeRegex& Gpt2Regex() {
  static const UnicodeRegex* re = UnicodeRegex::Compile(kGpt2SplitPattern)->release();
  return *re;
}

}  // namespace

std::vector<std::string_view> SplitGpt2(std::string_view text) {
  std::vector<std::string_view> out;
  std::vector<std::pair<size_t, size_t>> matches;
  size_t i = 0;
  while (i < text.size()) {
    // The maximal valid run starting at i.
    size_t j = i;
    uint32_t cp;
    for (size_t len; j < text.size() && (len = utf8::Decode(text, j, &cp)) > 0;) j += len;
    if (j > i) {
      const std::string_view run = text.substr(i, j - i);
      matches.clear();
      Gpt2Regex().FindAll(run, &matches);
      // Isolated: matches and the gaps between them are all pieces.
      size_t prev = 0;
      for (const auto& [b, e] : matches) {
        if (b > prev) out.push_back(run.substr(prev, b - prev));
        if (e > b) out.push_back(run.substr(b, e - b));
        prev = e;
      }
      if (prev < run.size()) out.push_back(run.substr(prev));
    }
    if (j < text.size()) out.push_back(text.substr(j, 1));  // an invalid byte
    i = j + 1;
  }
  return out;
}

const std::string& ByteToUnicode(uint8_t byte) { return Maps().byte_to_utf8[byte]; }

std::string ByteLevelEncode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out.append(Maps().byte_to_utf8[b]);
  return out;
}

std::string ByteLevelDecode(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  const auto& map = Maps().cp_to_byte;
  for (size_t i = 0; i < token.size();) {
    uint32_t cp;
    const size_t len = utf8::Decode(token, i, &cp);
    auto it = len == 0 ? map.end() : map.find(cp);
    if (it == map.end()) return std::string(token);
    out.push_back(static_cast<char>(it->second));
    i += len;
  }
  return out;
}

}  // namespace hc
