#include "router/service/hf_text_codec.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"

namespace hc::router {
namespace {

// Decodes like Tokenizer::Decode (invalid UTF-8 becomes U+FFFD per maximal
// invalid subpart), holding back a trailing incomplete character.
class HfStreamDecoder final : public StreamDecoder {
 public:
  explicit HfStreamDecoder(const HfTextCodec* codec) : codec_(codec) {}
  std::string Push(std::span<const uint32_t> ids) override {
    return PushBytes(codec_->TokenBytes(ids));
  }
  std::string PushBytes(std::string_view bytes) override {
    pending_.append(bytes);
    const size_t hold = utf8::IncompleteSuffixLength(pending_);
    std::string out = utf8::Lossy(std::string_view(pending_).substr(0, pending_.size() - hold));
    pending_.erase(0, pending_.size() - hold);
    return out;
  }
  std::string Flush() override {
    std::string out = utf8::Lossy(pending_);
    pending_.clear();
    return out;
  }

 private:
  const HfTextCodec* codec_;
  std::string pending_;
};

void Append(std::vector<uint32_t>& out, const std::vector<TokenId>& ids) {
  for (const TokenId id : ids) out.push_back(static_cast<uint32_t>(id));
}

}  // namespace

absl::StatusOr<std::unique_ptr<HfTextCodec>> HfTextCodec::FromModelDir(const std::string& dir) {
  HC_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                      Tokenizer::FromFile(dir + "/tokenizer.json"));
  HC_ASSIGN_OR_RETURN(ChatTemplate tmpl, ChatTemplate::FromModelDir(dir));
  const std::optional<TokenId> end = tokenizer->TokenToId(tmpl.end_of_turn());
  if (!end.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/tokenizer.json has no token for the chat template's end of turn ",
                     std::string(tmpl.end_of_turn())));
  }
  return std::unique_ptr<HfTextCodec>(new HfTextCodec(std::move(tokenizer), std::move(tmpl), *end));
}

absl::StatusOr<EncodedTurn> HfTextCodec::DoEncodeTurn(std::span<const TurnMessage> messages,
                                                      const TurnContext& context,
                                                      const std::atomic<bool>* cancel) const {
  EncodedTurn out;
  if (!context.first_turn) {
    if (!context.last_token.has_value() ||
        *context.last_token != static_cast<uint32_t>(end_of_turn_)) {
      out.tokens.push_back(static_cast<uint32_t>(end_of_turn_));
    }
    Append(out.tokens, tokenizer_->Encode(template_.after_end_of_turn(), /*allow_special=*/false));
  }
  // Messages render independently, so encoding them one by one gives the same
  // ids as encoding the whole conversation, and each message's range is exact.
  for (const TurnMessage& m : messages) {
    out.message_begins.push_back(static_cast<uint32_t>(out.tokens.size()));
    const ChatMessage message{std::string(RoleName(m.role)), m.content};
    Append(out.tokens, EncodeChat(*tokenizer_, template_, absl::MakeConstSpan(&message, 1),
                                  /*add_generation_prompt=*/false, cancel));
    out.message_ends.push_back(static_cast<uint32_t>(out.tokens.size()));
    if (cancel != nullptr && cancel->load()) return absl::CancelledError("tokenization cancelled");
  }
  Append(out.tokens, EncodeChat(*tokenizer_, template_, {}, /*add_generation_prompt=*/true));
  return out;
}

std::string HfTextCodec::Decode(std::span<const uint32_t> ids) const {
  std::vector<TokenId> t(ids.begin(), ids.end());
  return tokenizer_->Decode(t, /*skip_special=*/true);
}

std::string HfTextCodec::TokenBytes(std::span<const uint32_t> ids) const {
  std::string bytes;
  for (const uint32_t id : ids) {
    const auto t = static_cast<TokenId>(id);
    if (!tokenizer_->IsSpecial(t)) bytes.append(tokenizer_->TokenBytes(t));
  }
  return bytes;
}

std::vector<uint32_t> HfTextCodec::EncodeBytes(std::string_view bytes) const {
  std::vector<uint32_t> ids;
  Append(ids, tokenizer_->Encode(bytes, /*allow_special=*/false));
  if (TokenBytes(ids) == bytes) return ids;
  // The tokenizer changed the text (a prefix space, say): one byte-level
  // token per byte always spells it exactly.
  ids.clear();
  for (const char c : bytes) {
    const std::optional<TokenId> id = tokenizer_->TokenToId(ByteToUnicode(static_cast<uint8_t>(c)));
    if (id.has_value()) ids.push_back(static_cast<uint32_t>(*id));
  }
  return ids;
}

std::unique_ptr<StreamDecoder> HfTextCodec::NewStreamDecoder() const {
  return std::make_unique<HfStreamDecoder>(this);
}

uint32_t HfTextCodec::vocab_size() const { return static_cast<uint32_t>(tokenizer_->vocab_size()); }

}  // namespace hc::router
