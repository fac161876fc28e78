// Input validation of the public API. Every violation is INVALID_ARGUMENT
// with a message naming the field; the context-length check (which needs the
// ledger and the tokenizer) is RESOURCE_EXHAUSTED and lives in the service.
// The key and sampling checks are shared with the worker
// (common/request_checks.h).
#ifndef HC_ROUTER_SERVICE_VALIDATION_H_
#define HC_ROUTER_SERVICE_VALIDATION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/request_checks.h"
#include "hybridcache/v1/chat.pb.h"

namespace hc::router {

// Key, exactly one of messages / suffix_token_ids, roles, UTF-8, token ids
// below `vocab_size`, and sampling ranges.
absl::Status ValidateCompleteRequest(const hybridcache::v1::CompleteRequest& request,
                                     uint32_t vocab_size);

}  // namespace hc::router

#endif  // HC_ROUTER_SERVICE_VALIDATION_H_
