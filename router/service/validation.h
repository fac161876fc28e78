// Input validation of the public API. Every violation is INVALID_ARGUMENT
// with a message naming the field; the context-length check (which needs the
// ledger and the tokenizer) is RESOURCE_EXHAUSTED and lives in the service.
#ifndef HC_ROUTER_SERVICE_VALIDATION_H_
#define HC_ROUTER_SERVICE_VALIDATION_H_

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "common/stop_limits.h"
#include "hybridcache/v1/chat.pb.h"

namespace hc::router {

inline constexpr size_t kMaxConversationIdLength = 128;
inline constexpr size_t kMaxCacheSaltBytes = 1024;
// The stop-condition bounds (kMaxStopStrings, kMaxStopStringBytes,
// kMaxStopTokenIds) are in common/stop_limits.h: the worker enforces the same.

// conversation_id: 1-128 characters of [A-Za-z0-9._:-]; cache_salt <= 1024 bytes.
absl::Status ValidateKey(std::string_view conversation_id, std::string_view cache_salt);

// Key, exactly one of messages / suffix_token_ids, roles, UTF-8, token ids
// below `vocab_size`, and sampling ranges.
absl::Status ValidateCompleteRequest(const hybridcache::v1::CompleteRequest& request,
                                     uint32_t vocab_size);

}  // namespace hc::router

#endif  // HC_ROUTER_SERVICE_VALIDATION_H_
