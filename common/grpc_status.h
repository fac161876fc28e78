// One-to-one mapping between absl::Status and grpc::Status. Both use the
// canonical google.rpc codes, so the code and message carry over unchanged.
// A retry delay (common/retry_delay.h) travels as a google.rpc.RetryInfo in a
// serialized google.rpc.Status in the grpc-status-details-bin trailer, in both
// directions.
#ifndef HC_COMMON_GRPC_STATUS_H_
#define HC_COMMON_GRPC_STATUS_H_

#include <optional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/support/status.h"

namespace hc {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);
// The RetryInfo delay in a status's details; nullopt when it has none.
std::optional<absl::Duration> GrpcRetryDelay(const grpc::Status& status);

}  // namespace hc

#endif  // HC_COMMON_GRPC_STATUS_H_
