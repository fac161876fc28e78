#include "common/raw_proto.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace hc {

absl::Status ParseRawRequest(const grpc::ByteBuffer& raw, google::protobuf::Message* message) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (raw.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices)
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  if (!message->ParseFromString(bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "malformed request: the ", bytes.size(), " bytes are not a valid ", message->GetTypeName(),
        " (truncated or corrupt protobuf, or a string field that is not valid UTF-8)"));
  }
  return absl::OkStatus();
}

grpc::ByteBuffer SerializeRawResponse(const google::protobuf::Message& message) {
  const std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace hc
