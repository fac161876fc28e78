#include "router/service/reply_stream.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace hc::router {

ReplyStream::ReplyStream(const TextCodec* codec, std::span<const std::string> stops)
    : codec_(codec), matcher_(stops), decoder_(codec->NewStreamDecoder()) {}

ReplyStream::Chunk ReplyStream::Push(
    std::span<const uint32_t> ids, std::span<const float> logprobs,
    const google::protobuf::RepeatedPtrField<hybridcache::v1::TopLogprobs>& top) {
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string b = codec_->TokenBytes(ids.subspan(i, 1));
    bytes_ += b;
    matcher_.Feed(b);  // consumes nothing once a stop string has completed
    tokens_.push_back(ids[i]);
    token_ends_.push_back(static_cast<int64_t>(bytes_.size()));
    if (logprobs.size() == ids.size()) logprobs_.push_back(logprobs[i]);
    if (static_cast<size_t>(top.size()) == ids.size()) top_.push_back(top[static_cast<int>(i)]);
  }
  Chunk out;
  // What cannot be part of a stop string: everything before the longest
  // suffix that may still be one (the matcher stops at a complete match, so
  // this never passes a stop string's first byte).
  Emit(matcher_.offset() - matcher_.HeldBytes(), out);
  return out;
}

void ReplyStream::Emit(int64_t bytes, Chunk& out) {
  if (bytes > released_bytes_) {
    out.text += decoder_->PushBytes(std::string_view(bytes_).substr(
        released_bytes_, static_cast<size_t>(bytes - released_bytes_)));
    released_bytes_ = bytes;
  }
  while (released_tokens_ < tokens_.size() && token_ends_[released_tokens_] <= released_bytes_) {
    out.token_ids.push_back(tokens_[released_tokens_]);
    reply_.push_back(tokens_[released_tokens_]);
    if (released_tokens_ < logprobs_.size()) out.logprobs.push_back(logprobs_[released_tokens_]);
    if (released_tokens_ < top_.size()) out.top_logprobs.push_back(top_[released_tokens_]);
    ++released_tokens_;
  }
}

absl::StatusOr<ReplyStream::Chunk> ReplyStream::Finish(
    const hybridcache::v1::CommitReport& report) {
  if (finished_) return absl::InternalError("the reply was already finished");
  Chunk out;
  if (!report.has_stop_string()) {
    finished_ = true;
    Emit(static_cast<int64_t>(bytes_.size()), out);
    out.text += decoder_->Flush();
    return out;
  }
  const int64_t cut = report.stop_string().reply_bytes();
  const size_t c = report.stop_string().tokens_before();
  const int64_t begin = c == 0 || c > tokens_.size() ? 0 : token_ends_[c - 1];
  if (c >= tokens_.size() || cut < begin || cut >= token_ends_[c] || cut < released_bytes_) {
    return absl::InternalError(absl::StrCat("the worker reported a stop string at byte ", cut,
                                            " in generated token ", c, ", which does not fit the ",
                                            tokens_.size(), " generated tokens (", bytes_.size(),
                                            " bytes, ", released_bytes_, " already streamed)"));
  }
  finished_ = true;
  // The whole tokens before the stop string, then the cut token's leading
  // bytes as tokens of their own.
  Emit(begin, out);
  const std::string lead =
      bytes_.substr(static_cast<size_t>(begin), static_cast<size_t>(cut - begin));
  const std::vector<uint32_t> lead_ids = codec_->EncodeBytes(lead);
  out.token_ids.insert(out.token_ids.end(), lead_ids.begin(), lead_ids.end());
  if (!logprobs_.empty()) {
    out.logprobs.insert(out.logprobs.end(), lead_ids.size(),
                        std::numeric_limits<float>::quiet_NaN());
  }
  if (!top_.empty()) out.top_logprobs.resize(out.top_logprobs.size() + lead_ids.size());
  reply_.insert(reply_.end(), lead_ids.begin(), lead_ids.end());
  out.text += decoder_->PushBytes(std::string_view(bytes_).substr(
      static_cast<size_t>(released_bytes_), static_cast<size_t>(cut - released_bytes_)));
  released_bytes_ = cut;
  out.text += decoder_->Flush();
  return out;
}

}  // namespace hc::router
