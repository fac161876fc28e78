#include "router/service/hf_text_codec.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
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

// The largest position in [floor, at] of `full.text` at which encoding the
// text as two pieces equals encoding it whole: an edge of a special token
// that the template wrote (the tokenizer splits the text there before
// anything else); `floor` when there is none.
size_t SafeCutAtOrBefore(const Tokenizer& tokenizer, const RenderedChat& full, size_t floor,
                         size_t at) {
  size_t best = floor;
  for (const auto& [begin, end] : full.template_ranges) {
    if (end <= floor || begin > at) continue;
    const std::string_view range = std::string_view(full.text).substr(begin, end - begin);
    for (const AddedToken& t : tokenizer.added_tokens()) {
      // lstrip/rstrip tokens take the whitespace beside them: not a clean edge.
      if (!t.special || t.lstrip || t.rstrip || t.content.empty()) continue;
      for (size_t p = range.find(t.content); p != std::string_view::npos;
           p = range.find(t.content, p + 1)) {
        for (const size_t edge : {begin + p, begin + p + t.content.size()}) {
          if (edge >= floor && edge <= at) best = std::max(best, edge);
        }
      }
    }
  }
  return best;
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

bool HfTextCodec::ProbeRewritesHistory() const {
  const std::vector<ChatMessage> probe = {
      {"user", "Hello"},
      {"assistant", "<think>\nThe user greets me.\n</think>\n\nHello! How can I help?"},
      {"user", "Tell me more."}};
  const absl::Span<const ChatMessage> span(probe);
  absl::StatusOr<std::string> prompt =
      template_.RenderText(span.subspan(0, 1), /*add_generation_prompt=*/true);
  absl::StatusOr<std::string> full = template_.RenderText(span, /*add_generation_prompt=*/true);
  if (!prompt.ok() || !full.ok()) return true;
  return !absl::StartsWith(*full, absl::StrCat(*prompt, probe[1].content, template_.end_of_turn()));
}

absl::StatusOr<EncodedTurn> HfTextCodec::DoEncodeTurn(std::span<const TurnMessage> messages,
                                                      const TurnContext& context,
                                                      const std::atomic<bool>* cancel) const {
  std::vector<ChatMessage> all;
  all.reserve(context.history.size() + messages.size());
  for (const TurnMessage& m : context.history) {
    all.push_back({std::string(RoleName(m.role)), m.content});
  }
  const size_t num_history = all.size();
  for (const TurnMessage& m : messages) all.push_back({std::string(RoleName(m.role)), m.content});
  const absl::Span<const ChatMessage> span(all);
  HC_ASSIGN_OR_RETURN(const RenderedChat full,
                      template_.Render(span, /*add_generation_prompt=*/true));

  // The committed text: the previous turn's prompt (the history before the
  // last reply, with the generation prompt) and the reply as sampled. When
  // the full rendering does not extend it (or it cannot be rebuilt: the
  // history does not end with a reply), the turn is a rewrite: the whole
  // rendering is encoded and the router keeps what the committed tokens share.
  size_t start = 0;
  bool rewrite = false;
  if (!context.first_turn) {
    rewrite = num_history == 0 || context.history.back().role != Role::kAssistant;
    if (!rewrite) {
      HC_ASSIGN_OR_RETURN(std::string committed,
                          template_.RenderText(span.subspan(0, num_history - 1),
                                               /*add_generation_prompt=*/true));
      committed += context.history.back().content;
      if (context.last_token.has_value() &&
          *context.last_token == static_cast<uint32_t>(end_of_turn_)) {
        committed += template_.end_of_turn();
      }
      rewrite = !absl::StartsWith(full.text, committed);
      if (!rewrite) start = committed.size();
    }
  }
  // The messages the encoding delimits: the new ones, or on a rewrite all.
  const size_t first = rewrite ? 0 : num_history;
  const size_t count = all.size() - first;

  // Where each message starts and ends in the rendering: the length of the
  // rendering of the conversation up to it, where that is a prefix of the
  // full rendering. Else (a template that renders the last message its own
  // way, as Qwen3's does an assistant message with reasoning) as far as the
  // two agree, cut back to the edge of a special token: the agreement can end
  // inside a word ("<t" of "<think>" and "<tool_call>"), and pieces cut there
  // would not encode as the whole text does.
  std::vector<size_t> bounds;  // bounds[i]: start of message i; bounds.back(): end of the last
  for (size_t i = 0; i <= count; ++i) {
    size_t b = bounds.empty() ? start : bounds.back();
    if (first + i > 0) {
      absl::StatusOr<std::string> prefix =
          template_.RenderText(span.subspan(0, first + i), /*add_generation_prompt=*/false);
      if (prefix.ok()) {
        size_t agree = 0;
        const size_t n = std::min(prefix->size(), full.text.size());
        while (agree < n && (*prefix)[agree] == full.text[agree]) ++agree;
        if (agree < prefix->size() && agree > b) {
          agree = SafeCutAtOrBefore(*tokenizer_, full, b, agree);
        }
        b = std::max(b, agree);
      }
    }
    bounds.push_back(b);
  }

  // Encode piece by piece (pieces meet at the template's own text, in
  // practice at special tokens, so this equals encoding the suffix whole),
  // special tokens only where the template wrote them.
  EncodedTurn out;
  out.rewrite = rewrite;
  auto encode = [&](size_t from, size_t to) {
    if (from >= to) return;
    std::vector<std::pair<size_t, size_t>> ranges;
    for (const auto& [b, e] : full.template_ranges) {
      const size_t lo = std::max(b, from);
      const size_t hi = std::min(e, to);
      if (lo < hi) ranges.emplace_back(lo - from, hi - from);
    }
    Append(out.tokens, tokenizer_->EncodeWithSpecialRanges(
                           std::string_view(full.text).substr(from, to - from), ranges, cancel));
  };
  encode(start, bounds[0]);
  for (size_t i = 0; i < count; ++i) {
    out.message_begins.push_back(static_cast<uint32_t>(out.tokens.size()));
    encode(bounds[i], bounds[i + 1]);
    out.message_ends.push_back(static_cast<uint32_t>(out.tokens.size()));
    if (cancel != nullptr && cancel->load()) return absl::CancelledError("tokenization cancelled");
  }
  encode(bounds.back(), full.text.size());
  if (cancel != nullptr && cancel->load()) return absl::CancelledError("tokenization cancelled");
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
