// Checks of request fields that the router (public API) and the worker
// (internal API) share: the conversation key and the sampling parameters
// (hybridcache.v1.SamplingParams travels unchanged from the client through
// the router to the worker). One implementation, so both sides accept and
// reject exactly the same values. Every violation is INVALID_ARGUMENT with a
// message naming the field.
#ifndef HC_COMMON_REQUEST_CHECKS_H_
#define HC_COMMON_REQUEST_CHECKS_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "common/text/stop_limits.h"
#include "hybridcache/v1/chat.pb.h"

namespace hc {

inline constexpr size_t kMaxConversationIdLength = 128;
inline constexpr size_t kMaxCacheSaltBytes = 1024;
// Tenant ids come from the router's API keys file (router/tenancy).
inline constexpr size_t kMaxTenantBytes = 128;
// OpenAI's bound on top_logprobs (SamplingParams.top_logprobs).
inline constexpr uint32_t kMaxTopLogprobs = 20;
// The stop-condition bounds (kMaxStopStrings, kMaxStopStringBytes,
// kMaxStopTokenIds) are in common/text/stop_limits.h.

// conversation_id: 1-128 characters of [A-Za-z0-9._:-]; cache_salt <= 1024 bytes.
absl::Status ValidateConversationKey(std::string_view conversation_id, std::string_view cache_salt);

// temperature finite and >= 0, top_p in (0, 1], top_k <= INT32_MAX,
// top_logprobs <= kMaxTopLogprobs and only with logprobs,
// max_tokens >= 1, at most kMaxStopStrings non-empty UTF-8 stop strings of at
// most kMaxStopStringBytes, at most kMaxStopTokenIds stop token ids, each
// below `vocab_size`. Field names in messages are prefixed "sampling.".
absl::Status ValidateSamplingParams(const hybridcache::v1::SamplingParams& sampling,
                                    uint32_t vocab_size);

}  // namespace hc

#endif  // HC_COMMON_REQUEST_CHECKS_H_
