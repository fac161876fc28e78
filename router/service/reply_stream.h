// The reply of one turn on its way from the worker to the client: decodes the
// generated tokens into text and holds back whatever could still turn out to
// be (the start of) a stop string, so no chunk ever carries a stop string.
//
// The text is the generated tokens' bytes (TextCodec::TokenBytes) decoded as
// UTF-8 by the codec's stream decoder. With stop strings, the longest suffix
// of those bytes that is a prefix of some stop string is held back, and so is
// every token not wholly before it; once a stop string has completed, nothing
// more is released. At the end, the worker's CommitReport decides: without a
// stop string everything held is released; with one (its StopStringCut), only
// the text before the stop string, and the token the stop string begins in is
// replaced by the re-tokenization of its bytes before it (TextCodec::
// EncodeBytes), so the reply's tokens decode exactly to the reply's text.
//
// Contract: the concatenation of every chunk's token_ids is reply_tokens();
// the concatenation of every chunk's text is the codec's Decode of them.
//
// Thread-safety: none (owned by one turn, used under its lock).
#ifndef HC_ROUTER_SERVICE_REPLY_STREAM_H_
#define HC_ROUTER_SERVICE_REPLY_STREAM_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/text/stop_matcher.h"
#include "hybridcache/v1/worker.pb.h"
#include "router/service/text_codec.h"

namespace hc::router {

class ReplyStream {
 public:
  struct Chunk {
    std::vector<uint32_t> token_ids;
    std::vector<float> logprobs;  // one per token id when the worker sent them
    // One per token id when the worker sent them (top_logprobs > 0).
    std::vector<hybridcache::v1::TopLogprobs> top_logprobs;
    std::string text;
    bool empty() const { return token_ids.empty() && text.empty(); }
  };

  // `codec` must outlive the stream. `stops` as validated (non-empty strings).
  ReplyStream(const TextCodec* codec, std::span<const std::string> stops);

  // Generated tokens (and their log-probabilities and top alternatives, if
  // any: each used only when it has one entry per id) in; what may reach the
  // client now out.
  Chunk Push(std::span<const uint32_t> ids, std::span<const float> logprobs,
             const google::protobuf::RepeatedPtrField<hybridcache::v1::TopLogprobs>& top = {});

  // The turn ended with `report`: the rest of the reply. Re-tokenized tokens
  // carry NaN log-probabilities and empty top alternatives. INTERNAL when the report's stop cut
  // does not fit the generated tokens (nothing is released then).
  absl::StatusOr<Chunk> Finish(const hybridcache::v1::CommitReport& report);

  // The reply's tokens: every token released so far (all of them after Finish).
  const std::vector<uint32_t>& reply_tokens() const { return reply_; }
  // Tokens the worker generated (stop string included).
  size_t num_generated() const { return tokens_.size(); }

 private:
  // Releases bytes [released_bytes_, bytes) as text and the tokens wholly
  // before them.
  void Emit(int64_t bytes, Chunk& out);

  const TextCodec* const codec_;
  StopMatcher matcher_;
  std::unique_ptr<StreamDecoder> decoder_;
  std::vector<uint32_t> tokens_;                   // generated
  std::vector<float> logprobs_;                    // per generated token, when sent
  std::vector<hybridcache::v1::TopLogprobs> top_;  // per generated token, when sent
  std::vector<int64_t> token_ends_;                // byte offset at which each generated token ends
  std::string bytes_;                              // the generated tokens' bytes
  size_t released_tokens_ = 0;
  int64_t released_bytes_ = 0;
  std::vector<uint32_t> reply_;
  bool finished_ = false;
};

}  // namespace hc::router

#endif  // HC_ROUTER_SERVICE_REPLY_STREAM_H_
