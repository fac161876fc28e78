// Encoding and decoding; loading is in tokenizer_load.cc.
#include "common/text/tokenizer.h"

#include <algorithm>

#include "common/utf8.h"

namespace hc {

std::vector<TokenId> Tokenizer::Encode(std::string_view text, bool allow_special) const {
  if (allow_special) {
    const std::pair<size_t, size_t> all[] = {{0, text.size()}};
    return EncodeWithSpecialRanges(text, all);
  }
  return EncodeWithSpecialRanges(text, {});
}

std::vector<TokenId> Tokenizer::EncodeWithSpecialRanges(
    std::string_view text, absl::Span<const std::pair<size_t, size_t>> special_ranges,
    const std::atomic<bool>* cancel) const {
  const auto special_allowed = [special_ranges](size_t pos) {
    // The first range ending after pos; allowed when it also starts at or
    // before pos.
    auto it =
        std::upper_bound(special_ranges.begin(), special_ranges.end(), pos,
                         [](size_t p, const std::pair<size_t, size_t>& r) { return p < r.second; });
    return it != special_ranges.end() && it->first <= pos;
  };
  std::vector<TokenId> out;
  std::vector<TextSegment> segments;
  if (raw_matcher_->empty()) {
    segments.push_back({-1, 0, text.size()});
  } else {
    raw_matcher_->Split(text, special_allowed, &segments);
  }
  for (const TextSegment& s : segments) {
    if (s.id >= 0) {
      out.push_back(s.id);
    } else {
      EncodeOrdinary(text.substr(s.begin, s.end - s.begin), special_allowed, s.begin, &out, cancel);
    }
  }
  return out;
}

void Tokenizer::EncodeOrdinary(std::string_view text,
                               const std::function<bool(size_t)>& special_allowed, size_t offset,
                               std::vector<TokenId>* out, const std::atomic<bool>* cancel) const {
  for (size_t i = 0; i < text.size();) {
    size_t j = i;
    uint32_t cp;
    for (size_t len; j < text.size() && (len = utf8::Decode(text, j, &cp)) > 0;) j += len;
    if (j > i) {
      const std::string_view run = text.substr(i, j - i);
      if (normalizer_->is_identity() && normalized_matcher_->empty()) {
        EncodeNormalized(run, out, cancel);
      } else {
        const std::string normalized = normalizer_->Normalize(run);
        std::vector<TextSegment> segments;
        // Positions in normalized text do not map back to the caller's
        // ranges; a normalized special token is allowed where its run starts.
        const bool allowed = special_allowed(offset + i);
        normalized_matcher_->Split(
            normalized, [allowed](size_t) { return allowed; }, &segments);
        for (const TextSegment& s : segments) {
          if (s.id >= 0) {
            out->push_back(s.id);
          } else {
            EncodeNormalized(std::string_view(normalized).substr(s.begin, s.end - s.begin), out,
                             cancel);
          }
        }
      }
    }
    if (j < text.size()) model_.EncodeWord(text.substr(j, 1), out);  // an invalid byte
    i = j + 1;
  }
}

void Tokenizer::EncodeNormalized(std::string_view text, std::vector<TokenId>* out,
                                 const std::atomic<bool>* cancel) const {
  if (text.empty()) return;
  std::vector<std::string_view> words;
  std::deque<std::string> arena;
  pre_tokenizer_->Run(text, &words, &arena);
  for (std::string_view word : words) {
    if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) return;
    model_.EncodeWord(word, out);
  }
}

std::string_view Tokenizer::TokenBytes(TokenId id) const {
  if (!IsValidId(id)) return {};
  return id_to_bytes_[id];
}

std::optional<TokenId> Tokenizer::TokenToId(std::string_view token) const {
  if (auto it = added_by_content_.find(absl::string_view(token.data(), token.size()));
      it != added_by_content_.end()) {
    return it->second;
  }
  const auto& vocab = model_.vocab();
  auto it = vocab.find(absl::string_view(token.data(), token.size()));
  if (it == vocab.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::IsSpecial(TokenId id) const { return IsValidId(id) && is_special_[id]; }

std::string Tokenizer::Decode(absl::Span<const TokenId> ids, bool skip_special) const {
  std::string bytes;
  for (TokenId id : ids) {
    if (skip_special && IsSpecial(id)) continue;
    bytes.append(TokenBytes(id));
  }
  return utf8::Lossy(bytes);
}

std::string StreamingDecoder::Push(TokenId id) {
  if (skip_special_ && tokenizer_->IsSpecial(id)) return {};
  pending_.append(tokenizer_->TokenBytes(id));
  const size_t hold = utf8::IncompleteSuffixLength(pending_);
  std::string out = utf8::Lossy(std::string_view(pending_).substr(0, pending_.size() - hold));
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StreamingDecoder::Flush() {
  std::string out = utf8::Lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace hc
