#include "common/grpc_status.h"

#include <string>

namespace hc {

// The numeric values of absl::StatusCode and grpc::StatusCode are both the
// google.rpc.Code values 0..16, which the static_asserts pin down.
static_assert(static_cast<int>(absl::StatusCode::kUnauthenticated) ==
              static_cast<int>(grpc::StatusCode::UNAUTHENTICATED));
static_assert(static_cast<int>(absl::StatusCode::kDataLoss) ==
              static_cast<int>(grpc::StatusCode::DATA_LOSS));
static_assert(static_cast<int>(absl::StatusCode::kAborted) ==
              static_cast<int>(grpc::StatusCode::ABORTED));

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const int code = static_cast<int>(status.error_code());
  // Codes outside the canonical range (never produced by gRPC itself) are UNKNOWN.
  const absl::StatusCode mapped = (code > 0 && code <= 16) ? static_cast<absl::StatusCode>(code)
                                                           : absl::StatusCode::kUnknown;
  return absl::Status(mapped, status.error_message());
}

}  // namespace hc
