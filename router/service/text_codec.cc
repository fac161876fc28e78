#include "router/service/text_codec.h"

#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/model_path.h"
#include "common/status_macros.h"
#include "common/text/synthetic_tokenizer.h"
#include "router/service/hf_text_codec.h"

namespace hc::router {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the UTF-8 sequence starting at s[0]: >0 complete and valid,
// 0 incomplete (a valid prefix that needs more bytes), -1 invalid (consume
// one byte as U+FFFD).
int SequenceLength(std::string_view s) {
  const auto b0 = static_cast<unsigned char>(s[0]);
  if (b0 < 0x80) return 1;
  // Sequence length and the allowed range of the second byte (Unicode
  // Table 3-7: excludes overlongs, surrogates and code points > U+10FFFF).
  int n = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF)
    n = 2;
  else if (b0 == 0xE0) {
    n = 3;
    lo = 0xA0;
  } else if (b0 >= 0xE1 && b0 <= 0xEC)
    n = 3;
  else if (b0 == 0xED) {
    n = 3;
    hi = 0x9F;
  } else if (b0 >= 0xEE && b0 <= 0xEF)
    n = 3;
  else if (b0 == 0xF0) {
    n = 4;
    lo = 0x90;
  } else if (b0 >= 0xF1 && b0 <= 0xF3)
    n = 4;
  else if (b0 == 0xF4) {
    n = 4;
    hi = 0x8F;
  } else
    return -1;
  for (int i = 1; i < n; ++i) {
    if (static_cast<size_t>(i) >= s.size()) return 0;
    const auto b = static_cast<unsigned char>(s[i]);
    if (i == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) return -1;
  }
  return n;
}

void AppendByteText(std::span<const uint32_t> ids, std::string* out) {
  for (uint32_t id : ids) {
    if (id < 256) out->push_back(static_cast<char>(id));
  }
}

class ByteStreamDecoder final : public StreamDecoder {
 public:
  std::string Push(std::span<const uint32_t> ids) override {
    std::string bytes;
    AppendByteText(ids, &bytes);
    return assembler_.Push(bytes);
  }
  std::string PushBytes(std::string_view bytes) override { return assembler_.Push(bytes); }
  std::string Flush() override { return assembler_.Flush(); }

 private:
  Utf8Assembler assembler_;
};

}  // namespace

bool IsValidUtf8(std::string_view s) {
  while (!s.empty()) {
    const int n = SequenceLength(s);
    if (n <= 0) return false;
    s.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string Utf8Assembler::Push(std::string_view bytes) {
  held_.append(bytes);
  std::string out;
  std::string_view rest = held_;
  while (!rest.empty()) {
    const int n = SequenceLength(rest);
    if (n == 0) break;  // wait for the rest of the character
    if (n < 0) {
      out.append(kReplacement);
      rest.remove_prefix(1);
    } else {
      out.append(rest.substr(0, static_cast<size_t>(n)));
      rest.remove_prefix(static_cast<size_t>(n));
    }
  }
  held_ = std::string(rest);
  return out;
}

std::string Utf8Assembler::Flush() {
  std::string out = held_.empty() ? "" : std::string(kReplacement);
  held_.clear();
  return out;
}

absl::StatusOr<EncodedTurn> ByteTextCodec::DoEncodeTurn(std::span<const TurnMessage> messages,
                                                        const TurnContext& context,
                                                        const std::atomic<bool>* cancel) const {
  EncodedTurn out;
  // A reply cut short (no EOS / end token) is closed before the next message.
  if (!context.first_turn && context.last_token.has_value() && *context.last_token != kEos &&
      *context.last_token != kEnd) {
    out.tokens.push_back(kEnd);
  }
  for (const TurnMessage& m : messages) {
    out.message_begins.push_back(static_cast<uint32_t>(out.tokens.size()));
    out.tokens.push_back(kStart);
    for (char c : RoleName(m.role)) out.tokens.push_back(static_cast<unsigned char>(c));
    out.tokens.push_back('\n');
    for (char c : m.content) out.tokens.push_back(static_cast<unsigned char>(c));
    out.tokens.push_back(kEnd);
    out.message_ends.push_back(static_cast<uint32_t>(out.tokens.size()));
    if (cancel != nullptr && cancel->load()) return absl::CancelledError("tokenization cancelled");
  }
  out.tokens.push_back(kStart);
  for (char c : std::string_view("assistant\n"))
    out.tokens.push_back(static_cast<unsigned char>(c));
  return out;
}

std::string ByteTextCodec::Decode(std::span<const uint32_t> ids) const {
  Utf8Assembler a;
  std::string bytes;
  AppendByteText(ids, &bytes);
  std::string out = a.Push(bytes);
  out += a.Flush();
  return out;
}

std::string ByteTextCodec::TokenBytes(std::span<const uint32_t> ids) const {
  std::string bytes;
  AppendByteText(ids, &bytes);
  return bytes;
}

std::vector<uint32_t> ByteTextCodec::EncodeBytes(std::string_view bytes) const {
  std::vector<uint32_t> ids;
  ids.reserve(bytes.size());
  for (const char c : bytes) ids.push_back(static_cast<unsigned char>(c));
  return ids;
}

std::unique_ptr<StreamDecoder> ByteTextCodec::NewStreamDecoder() const {
  return std::make_unique<ByteStreamDecoder>();
}

namespace {

// Writes the synthetic tokenizer into `dir` once, atomically (temp dir, then
// rename), so concurrent routers never read half a directory.
absl::Status EnsureSyntheticTokenizer(std::string_view preset, const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::exists(dir + "/tokenizer.json", ec)) return absl::OkStatus();
  const std::string tmp = absl::StrCat(dir, ".tmp-", getpid());
  HC_RETURN_IF_ERROR(WriteSyntheticTokenizerFiles(preset, tmp));
  std::filesystem::rename(tmp, dir, ec);
  if (ec) {
    std::filesystem::remove_all(tmp, ec);
    // Another process may have won the race; only its result matters.
    if (!std::filesystem::exists(dir + "/tokenizer.json")) {
      return absl::InternalError(absl::StrCat("cannot create ", dir));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TextCodec>> MakeTextCodec(const std::string& model) {
  if (model == "bytes") return std::make_unique<ByteTextCodec>();
  std::string dir = model;
  if (const std::string_view preset = SyntheticPreset(model); !preset.empty()) {
    // Prefer the checkpoint a worker generated on this machine; a router in
    // its own container writes just the (identical) tokenizer files instead.
    dir = SyntheticModelDir(preset);
    if (!std::filesystem::exists(dir + "/tokenizer.json")) {
      dir += "-tokenizer";
      HC_RETURN_IF_ERROR(EnsureSyntheticTokenizer(preset, dir));
    }
  }
  HC_ASSIGN_OR_RETURN(auto codec, HfTextCodec::FromModelDir(dir));
  return codec;
}

}  // namespace hc::router
