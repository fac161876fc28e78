// Raw (grpc::ByteBuffer) requests and responses for gRPC callback services.
//
// Why: with typed callback methods gRPC parses the request itself and answers
// one it cannot parse (truncated, or a proto3 string field that is not valid
// UTF-8) with UNIMPLEMENTED and an empty message, before any service code
// runs. Services that register their methods as raw callback methods
// (Service::WithRawCallbackMethod_*) parse with ParseRawRequest instead and
// answer such a request INVALID_ARGUMENT with a readable message. The bytes on
// the wire are the same either way, so clients are unaffected.
#ifndef HC_COMMON_RAW_PROTO_H_
#define HC_COMMON_RAW_PROTO_H_

#include "absl/status/status.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/byte_buffer.h"

namespace hc {

// Parses `raw` into `message`; INVALID_ARGUMENT naming the message type when
// the bytes are not a valid serialization of it. `message` is unspecified
// after a failure.
absl::Status ParseRawRequest(const grpc::ByteBuffer& raw, google::protobuf::Message* message);

// Serializes a response (or a stream message) for a raw method.
grpc::ByteBuffer SerializeRawResponse(const google::protobuf::Message& message);

}  // namespace hc

#endif  // HC_COMMON_RAW_PROTO_H_
