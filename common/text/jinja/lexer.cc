#include "common/text/jinja/lexer.h"

#include <cctype>

#include "absl/strings/str_cat.h"
#include "common/text/jinja/pystr.h"
#include "common/utf8.h"

namespace hc::jinja {
namespace {

// "\r\n" and "\r" become "\n"; one trailing newline is dropped.
std::string NormalizeNewlines(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
    } else {
      out.push_back(s[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

size_t SkipSpace(std::string_view s, size_t i) {
  while (i < s.size()) {
    uint32_t cp;
    const size_t n = utf8::Decode(s, i, &cp);
    if (n == 0 || !IsPySpace(cp)) break;
    i += n;
  }
  return i;
}

std::string RStripSpace(std::string_view s) {
  return std::string(s.substr(0, PyStrip(s, nullptr, false, true).end));
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Python's unicode-escape decoding of a string literal's body.
absl::StatusOr<std::string> DecodeEscapes(std::string_view body, int line) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '\\' || i + 1 >= body.size()) {
      out.push_back(body[i]);
      continue;
    }
    const char c = body[++i];
    switch (c) {
      case '\n':
        break;  // line continuation
      case '\\':
        out.push_back('\\');
        break;
      case '\'':
        out.push_back('\'');
        break;
      case '"':
        out.push_back('"');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case 'x':
      case 'u':
      case 'U': {
        const size_t digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        uint32_t cp = 0;
        for (size_t k = 0; k < digits; ++k) {
          const int h = i + 1 + k < body.size() ? HexValue(body[i + 1 + k]) : -1;
          if (h < 0) {
            return absl::InvalidArgumentError(absl::StrCat(
                "chat template line ", line, ": truncated \\", std::string(1, c), " escape"));
          }
          cp = cp * 16 + static_cast<uint32_t>(h);
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
          return absl::InvalidArgumentError(
              absl::StrCat("chat template line ", line, ": escape is not a Unicode scalar value"));
        }
        utf8::Append(cp, &out);
        i += digits;
        break;
      }
      case 'N':
        return absl::InvalidArgumentError(
            absl::StrCat("chat template line ", line, ": \\N{...} escapes are not supported"));
      default:
        if (c >= '0' && c <= '7') {
          uint32_t cp = 0;
          size_t k = 0;
          for (; k < 3 && i + k < body.size() && body[i + k] >= '0' && body[i + k] <= '7'; ++k) {
            cp = cp * 8 + static_cast<uint32_t>(body[i + k] - '0');
          }
          utf8::Append(cp, &out);
          i += k - 1;
        } else {
          out.push_back('\\');
          out.push_back(c);
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string src) : src_(std::move(src)) {}

  absl::StatusOr<std::vector<Token>> Run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos <= src_.size()) {
      size_t start = pos;
      char kind = 0;
      for (; start + 1 < src_.size(); ++start) {
        if (src_[start] == '{' &&
            (src_[start + 1] == '{' || src_[start + 1] == '%' || src_[start + 1] == '#')) {
          kind = src_[start + 1];
          break;
        }
      }
      if (kind == 0) start = src_.size();
      std::string text = src_.substr(pos, start - pos);
      size_t i = start + 2;
      char mod = 0;
      if (kind != 0 && i < src_.size() && (src_[i] == '-' || src_[i] == '+')) mod = src_[i++];
      if (kind != 0) {
        if (mod == '-') {
          text = RStripSpace(text);
        } else if (mod != '+' && kind != '{') {
          const size_t nl = text.rfind('\n');
          const size_t l = nl == std::string::npos ? 0 : nl + 1;
          if ((l > 0 || line_starting) && text.find_first_not_of(" \t", l) == std::string::npos) {
            text.resize(l);
          }
        }
      }
      if (!text.empty()) Emit(TokenType::kText, text, LineAt(pos));
      if (kind == 0) break;
      size_t after;
      char end_mod = 0;
      if (kind == '#') {
        const size_t end = src_.find("#}", i);
        if (end == std::string::npos) {
          return absl::InvalidArgumentError(
              absl::StrCat("chat template line ", LineAt(start), ": unterminated comment"));
        }
        if (end > i && (src_[end - 1] == '-' || src_[end - 1] == '+')) end_mod = src_[end - 1];
        after = end + 2;
      } else {
        absl::StatusOr<size_t> end = LexTag(kind, start, i, &end_mod);
        if (!end.ok()) return end.status();
        after = *end;
      }
      if (end_mod == '-') {
        const size_t skipped = SkipSpace(src_, after);
        line_starting = skipped > after ? src_[skipped - 1] == '\n' : false;
        after = skipped;
      } else if (end_mod != '+' && kind != '{' && after < src_.size() && src_[after] == '\n') {
        ++after;
        line_starting = true;
      } else {
        line_starting = false;
      }
      pos = after;
      if (pos == src_.size()) break;
    }
    Emit(TokenType::kEnd, "", LineAt(src_.size()));
    return std::move(tokens_);
  }

 private:
  int LineAt(size_t pos) {
    while (line_pos_ < pos && line_pos_ < src_.size()) {
      if (src_[line_pos_++] == '\n') ++line_;
    }
    return line_;
  }

  void Emit(TokenType t, std::string v, int line) { tokens_.push_back({t, std::move(v), line}); }

  // Lexes the inside of a {{ }} or {% %} tag from `i`; returns the position
  // after its end marker.
  absl::StatusOr<size_t> LexTag(char kind, size_t start, size_t i, char* end_mod) {
    const int line = LineAt(start);
    Emit(kind == '{' ? TokenType::kVarBegin : TokenType::kBlockBegin, "", line);
    const std::string close = kind == '{' ? "}}" : "%}";
    std::vector<char> balance;
    while (true) {
      i = SkipSpace(src_, i);
      if (i >= src_.size()) {
        return absl::InvalidArgumentError(absl::StrCat("chat template line ", line,
                                                       ": unterminated ",
                                                       kind == '{' ? "{{ ... }}" : "{% ... %}"));
      }
      const int tl = LineAt(i);
      if (balance.empty()) {
        for (const char m : {'-', '+', '\0'}) {
          const size_t at = m == '\0' ? i : i + 1;
          if ((m == '\0' || src_[i] == m) && src_.compare(at, 2, close) == 0) {
            if (m == '+' && kind == '{') continue;
            *end_mod = m;
            Emit(kind == '{' ? TokenType::kVarEnd : TokenType::kBlockEnd, "", tl);
            return at + 2;
          }
        }
      }
      const char c = src_[i];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t j = i;
        while (j < src_.size() &&
               (std::isalnum(static_cast<unsigned char>(src_[j])) || src_[j] == '_'))
          ++j;
        Emit(TokenType::kName, src_.substr(i, j - i), tl);
        i = j;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        i = LexNumber(i, tl);
      } else if (c == '\'' || c == '"') {
        size_t j = i + 1;
        while (j < src_.size() && src_[j] != c) j += src_[j] == '\\' ? 2 : 1;
        if (j >= src_.size()) {
          return absl::InvalidArgumentError(
              absl::StrCat("chat template line ", tl, ": unterminated string"));
        }
        absl::StatusOr<std::string> s =
            DecodeEscapes(std::string_view(src_).substr(i + 1, j - i - 1), tl);
        if (!s.ok()) return s.status();
        Emit(TokenType::kString, *std::move(s), tl);
        i = j + 1;
      } else {
        static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", "<=", ">="};
        std::string op;
        for (const std::string_view two : kTwo) {
          if (src_.compare(i, 2, two) == 0) op = two;
        }
        if (op.empty()) {
          if (std::string_view("+-*/%~()[]{},.:|=<>").find(c) == std::string_view::npos) {
            return absl::InvalidArgumentError(absl::StrCat(
                "chat template line ", tl, ": unexpected character '", std::string(1, c), "'"));
          }
          op = std::string(1, c);
        }
        if (op == "(" || op == "[" || op == "{") balance.push_back(op[0]);
        if (op == ")" || op == "]" || op == "}") {
          const char want = op == ")" ? '(' : op == "]" ? '[' : '{';
          if (balance.empty() || balance.back() != want) {
            return absl::InvalidArgumentError(
                absl::StrCat("chat template line ", tl, ": unexpected '", op, "'"));
          }
          balance.pop_back();
        }
        Emit(TokenType::kOp, op, tl);
        i += op.size();
      }
    }
  }

  size_t LexNumber(size_t i, int line) {
    auto digits = [&](size_t j) {
      while (j < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[j])) ||
                                 (src_[j] == '_' && j + 1 < src_.size() &&
                                  std::isdigit(static_cast<unsigned char>(src_[j + 1]))))) {
        ++j;
      }
      return j;
    };
    size_t j = digits(i);
    bool is_float = false;
    if (j + 1 < src_.size() && src_[j] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[j + 1]))) {
      j = digits(j + 1);
      is_float = true;
    }
    if (j < src_.size() && (src_[j] == 'e' || src_[j] == 'E')) {
      size_t k = j + 1;
      if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
      if (k < src_.size() && std::isdigit(static_cast<unsigned char>(src_[k]))) {
        j = digits(k);
        is_float = true;
      }
    }
    std::string text;
    for (size_t k = i; k < j; ++k) {
      if (src_[k] != '_') text.push_back(src_[k]);
    }
    Emit(is_float ? TokenType::kFloat : TokenType::kInt, text, line);
    return j;
  }

  std::string src_;
  std::vector<Token> tokens_;
  size_t line_pos_ = 0;
  int line_ = 1;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source) {
  return Lexer(NormalizeNewlines(source)).Run();
}

}  // namespace hc::jinja
