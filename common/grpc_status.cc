#include "common/grpc_status.h"

#include <string>

#include "common/retry_delay.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

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
  const auto code = static_cast<grpc::StatusCode>(status.code());
  std::string message(status.message());
  const std::optional<absl::Duration> delay = RetryDelayOf(status);
  if (!delay.has_value()) return grpc::Status(code, std::move(message));
  google::rpc::RetryInfo retry;
  const int64_t ms = absl::ToInt64Milliseconds(*delay);
  retry.mutable_retry_delay()->set_seconds(ms / 1000);
  retry.mutable_retry_delay()->set_nanos(static_cast<int32_t>(ms % 1000) * 1000000);
  google::rpc::Status details;
  details.set_code(static_cast<int32_t>(code));
  details.set_message(message);
  details.add_details()->PackFrom(retry);
  return grpc::Status(code, std::move(message), details.SerializeAsString());
}

std::optional<absl::Duration> GrpcRetryDelay(const grpc::Status& status) {
  google::rpc::Status details;
  if (status.error_details().empty() || !details.ParseFromString(status.error_details())) {
    return std::nullopt;
  }
  for (const google::protobuf::Any& any : details.details()) {
    google::rpc::RetryInfo retry;
    if (any.UnpackTo(&retry)) {
      return absl::Seconds(retry.retry_delay().seconds()) +
             absl::Nanoseconds(retry.retry_delay().nanos());
    }
  }
  return std::nullopt;
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const int code = static_cast<int>(status.error_code());
  // Codes outside the canonical range (never produced by gRPC itself) are UNKNOWN.
  const absl::StatusCode mapped =
      (code > 0 && code <= 16) ? static_cast<absl::StatusCode>(code) : absl::StatusCode::kUnknown;
  absl::Status out(mapped, status.error_message());
  if (std::optional<absl::Duration> delay = GrpcRetryDelay(status)) {
    out = WithRetryDelay(std::move(out), *delay);
  }
  return out;
}

}  // namespace hc
