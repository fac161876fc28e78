#include "router/service/hf_text_codec.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace hc::router {
namespace {

class HfStreamDecoder final : public StreamDecoder {
 public:
  explicit HfStreamDecoder(const Tokenizer* tokenizer) : decoder_(tokenizer, /*skip_special=*/true) {}
  std::string Push(std::span<const uint32_t> ids) override {
    std::string out;
    for (const uint32_t id : ids) out += decoder_.Push(static_cast<TokenId>(id));
    return out;
  }
  std::string Flush() override { return decoder_.Flush(); }

 private:
  StreamingDecoder decoder_;
};

void Append(std::vector<uint32_t>& out, const std::vector<TokenId>& ids) {
  for (const TokenId id : ids) out.push_back(static_cast<uint32_t>(id));
}

}  // namespace

absl::StatusOr<std::unique_ptr<HfTextCodec>> HfTextCodec::FromModelDir(const std::string& dir) {
  HC_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, Tokenizer::FromFile(dir + "/tokenizer.json"));
  HC_ASSIGN_OR_RETURN(ChatTemplate tmpl, ChatTemplate::FromModelDir(dir));
  const std::optional<TokenId> end = tokenizer->TokenToId(tmpl.end_of_turn());
  if (!end.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, "/tokenizer.json has no token for the chat template's end of turn ",
                                                   std::string(tmpl.end_of_turn())));
  }
  return std::unique_ptr<HfTextCodec>(new HfTextCodec(std::move(tokenizer), std::move(tmpl), *end));
}

absl::StatusOr<EncodedTurn> HfTextCodec::DoEncodeTurn(std::span<const TurnMessage> messages,
                                                      const TurnContext& context,
                                                      const std::atomic<bool>* cancel) const {
  EncodedTurn out;
  if (!context.first_turn) {
    if (!context.last_token.has_value() || *context.last_token != static_cast<uint32_t>(end_of_turn_)) {
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

std::unique_ptr<StreamDecoder> HfTextCodec::NewStreamDecoder() const {
  return std::make_unique<HfStreamDecoder>(tokenizer_.get());
}

uint32_t HfTextCodec::vocab_size() const { return static_cast<uint32_t>(tokenizer_->vocab_size()); }

}  // namespace hc::router
