#include "common/text/added_vocabulary.h"

#include <unicode/uchar.h>

#include <algorithm>

#include "common/utf8.h"

namespace hc {
namespace {

// The code point that ends `s` / starts `s` (0xFFFFFFFF when none).
uint32_t LastCodePoint(std::string_view s) {
  if (s.empty()) return 0xFFFFFFFFu;
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  uint32_t cp = 0;
  return utf8::Decode(s, i, &cp) > 0 ? cp : 0xFFFFFFFFu;
}
uint32_t FirstCodePoint(std::string_view s) {
  uint32_t cp = 0;
  return !s.empty() && utf8::Decode(s, 0, &cp) > 0 ? cp : 0xFFFFFFFFu;
}

// A word character for single_word, as `tokenizers` decides it: the \w of
// Rust's regex crate (Alphabetic, marks, decimal digits, connector
// punctuation, Join_Control). Probed against `tokenizers` 0.23.3: U+0301,
// U+203F, U+2160 and U+200D are word characters, U+00B2 and '-' are not.
bool IsWordChar(uint32_t cp) {
  if (cp == 0xFFFFFFFFu) return false;
  const auto c = static_cast<UChar32>(cp);
  if (u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL)) {
    return true;
  }
  const uint32_t mask = U_GET_GC_MASK(c);
  return (mask & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0;
}

// Rust's char::is_whitespace: the White_Space property.
bool IsSpace(uint32_t cp) {
  return cp != 0xFFFFFFFFu && u_hasBinaryProperty(static_cast<UChar32>(cp), UCHAR_WHITE_SPACE);
}

// Byte offset where the trailing whitespace of `s` begins.
size_t TrailingSpaceStart(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t i = end - 1;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
    uint32_t cp = 0;
    if (utf8::Decode(s, i, &cp) != end - i || !IsSpace(cp)) break;
    end = i;
  }
  return end;
}

// Byte length of the leading whitespace of `s`.
size_t LeadingSpaceLength(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp = 0;
    const size_t len = utf8::Decode(s, i, &cp);
    if (len == 0 || !IsSpace(cp)) break;
    i += len;
  }
  return i;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens,
                                     std::vector<std::string> patterns)
    : tokens_(std::move(tokens)), patterns_(std::move(patterns)), by_first_byte_(256) {
  for (size_t k = 0; k < tokens_.size(); ++k) {
    if (patterns_[k].empty()) continue;
    by_first_byte_[static_cast<unsigned char>(patterns_[k][0])].push_back(static_cast<int>(k));
  }
  for (auto& list : by_first_byte_) {
    std::stable_sort(list.begin(), list.end(),
                     [&](int a, int b) { return patterns_[a].size() > patterns_[b].size(); });
  }
}

// Follows `tokenizers`' AddedVocabulary::find_matches: the automaton reports
// leftmost-longest, non-overlapping matches; a match that its options reject
// (a special token where specials are not allowed, single_word) still
// consumes its bytes -- no shorter token of the same matcher is tried there --
// and lstrip/rstrip widen the accepted match afterwards.
void AddedTokenMatcher::Split(std::string_view text,
                              const std::function<bool(size_t)>& special_allowed,
                              std::vector<TextSegment>* out) const {
  size_t start_offset = 0;
  for (size_t i = 0; i < text.size();) {
    int found = -1;
    for (int k : by_first_byte_[static_cast<unsigned char>(text[i])]) {
      if (text.compare(i, patterns_[k].size(), patterns_[k]) == 0) {
        found = k;
        break;
      }
    }
    if (found < 0) {
      ++i;
      continue;
    }
    const AddedToken& t = tokens_[found];
    size_t start = i, stop = i + patterns_[found].size();
    i = stop;
    if (t.special && !special_allowed(start)) continue;
    if (t.single_word) {
      const bool start_space = start == 0 || !IsWordChar(LastCodePoint(text.substr(0, start)));
      const bool stop_space = stop == text.size() || !IsWordChar(FirstCodePoint(text.substr(stop)));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) start = std::max(TrailingSpaceStart(text.substr(0, start)), start_offset);
    if (t.rstrip) stop += LeadingSpaceLength(text.substr(stop));
    if (start_offset < start) out->push_back({-1, start_offset, start});
    out->push_back({t.id, start, stop});
    start_offset = stop;
  }
  if (start_offset < text.size()) out->push_back({-1, start_offset, text.size()});
}

}  // namespace hc
