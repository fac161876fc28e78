#include "common/text/unicode_regex.h"

#include <oniguruma.h>

#include <mutex>

#include "absl/strings/str_cat.h"
#include "common/utf8.h"

namespace hc {
namespace {

// onig_initialize is not thread-safe and must precede the first onig_new.
void InitOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}

const OnigUChar* U(const char* p) { return reinterpret_cast<const OnigUChar*>(p); }

}  // namespace

absl::StatusOr<std::unique_ptr<UnicodeRegex>> UnicodeRegex::Compile(std::string_view pattern) {
  InitOnce();
  std::unique_ptr<UnicodeRegex> re(new UnicodeRegex());
  re->pattern_ = std::string(pattern);
  OnigRegex regex = nullptr;
  OnigErrorInfo info;
  const int rc = onig_new(&regex, U(re->pattern_.data()), U(re->pattern_.data() + pattern.size()),
                          ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &info);
  if (rc != ONIG_NORMAL) {
    OnigUChar message[ONIG_MAX_ERROR_MESSAGE_LEN];
    onig_error_code_to_str(message, rc, &info);
    return absl::InvalidArgumentError(absl::StrCat(
        "regex \"", re->pattern_, "\" does not compile: ", reinterpret_cast<const char*>(message)));
  }
  re->regex_ = regex;
  return re;
}

absl::StatusOr<std::unique_ptr<UnicodeRegex>> UnicodeRegex::CompileLiteral(
    std::string_view literal) {
  // Escapes every ASCII punctuation character (an escaped punctuation
  // character is always itself in Oniguruma's syntax); letters, digits,
  // spaces and non-ASCII characters are literal already.
  std::string escaped;
  for (char c : literal) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && u > 0x20 && !(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'z') &&
        !(c >= 'A' && c <= 'Z')) {
      escaped.push_back('\\');
    }
    escaped.push_back(c);
  }
  return Compile(escaped);
}

UnicodeRegex::~UnicodeRegex() {
  if (regex_ != nullptr) onig_free(static_cast<OnigRegex>(regex_));
}

void UnicodeRegex::FindAll(std::string_view text,
                           std::vector<std::pair<size_t, size_t>>* matches) const {
  OnigRegex regex = static_cast<OnigRegex>(regex_);
  // One region per thread, reused: a search allocates nothing else.
  struct RegionHolder {
    OnigRegion* region = onig_region_new();
    ~RegionHolder() { onig_region_free(region, 1); }
  };
  thread_local RegionHolder holder;
  OnigRegion* region = holder.region;
  const OnigUChar* begin = U(text.data());
  const OnigUChar* end = begin + text.size();
  size_t from = 0;
  bool have_last = false;
  size_t last_end = 0;
  while (from <= text.size()) {
    onig_region_clear(region);
    const int pos = onig_search(regex, begin, end, begin + from, end, region, ONIG_OPTION_NONE);
    if (pos < 0) break;  // ONIG_MISMATCH (or an engine limit: the rest is unmatched)
    const auto s = static_cast<size_t>(region->beg[0]);
    const auto e = static_cast<size_t>(region->end[0]);
    if (s == e && have_last && last_end == e) {
      // An empty match where the previous match ended: step one character.
      if (from >= text.size()) break;
      uint32_t cp;
      const size_t len = utf8::Decode(text, from, &cp);
      from += len == 0 ? 1 : len;
      continue;
    }
    matches->emplace_back(s, e);
    from = e;
    have_last = true;
    last_end = e;
  }
}

}  // namespace hc
