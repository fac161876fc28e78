// One-to-one mapping between absl::Status and grpc::Status. Both use the
// canonical google.rpc codes, so the code and message carry over unchanged.
#ifndef HC_COMMON_GRPC_STATUS_H_
#define HC_COMMON_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace hc {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace hc

#endif  // HC_COMMON_GRPC_STATUS_H_
