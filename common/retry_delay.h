// A retry delay carried on an absl::Status (a RESOURCE_EXHAUSTED refusal that
// says when trying again can succeed), independent of gRPC: code that refuses
// (ledger caps, quotas) attaches it; ToGrpcStatus (common/grpc_status.h) turns
// it into a google.rpc.RetryInfo in the grpc-status-details-bin trailer.
#ifndef HC_COMMON_RETRY_DELAY_H_
#define HC_COMMON_RETRY_DELAY_H_

#include <optional>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace hc {

// The status with `delay` attached (whole milliseconds, at least 1 ms);
// an OK status is returned unchanged.
absl::Status WithRetryDelay(absl::Status status, absl::Duration delay);
// The attached delay, if any.
std::optional<absl::Duration> RetryDelayOf(const absl::Status& status);

}  // namespace hc

#endif  // HC_COMMON_RETRY_DELAY_H_
