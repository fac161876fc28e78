// Requests protobuf cannot parse (truncated, or a string field that is not
// UTF-8) sent as raw bytes: the router answers INVALID_ARGUMENT with a
// message and changes nothing (gRPC's typed callback methods would answer
// UNIMPLEMENTED with no message).
#include <string>

#include "absl/synchronization/notification.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "tests/unit/router/service/router_harness.h"

namespace hc::router {
namespace {

namespace v1 = hybridcache::v1;
using testing::RouterHarness;

grpc::Status RawCall(const std::string& address, const std::string& method,
                     const std::string& bytes) {
  grpc::GenericStub stub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1), response;
  grpc::Status result;
  absl::Notification done;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
    result = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

// A CompleteRequest whose conversation_id (field 1) holds invalid UTF-8.
std::string InvalidUtf8Request() {
  v1::CompleteRequest ok = RouterHarness::UserTurn("abc", "hello");
  std::string bytes = ok.SerializeAsString();
  const size_t at = bytes.find("abc");
  bytes[at] = static_cast<char>(0xC3);  // a lead byte followed by 'b': invalid
  return bytes;
}

TEST(RawRequestTest, MalformedCompleteRequestsAreInvalidArgumentAndChangeNothing) {
  RouterHarness h(1);
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("abc", "first")).status.ok());
  const std::string good = RouterHarness::UserTurn("abc", "second").SerializeAsString();
  const std::string method = "/hybridcache.v1.ChatService/Complete";
  for (const std::string& bytes : {InvalidUtf8Request(), good.substr(0, good.size() - 3),
                                   std::string("\xff\xff\xff\xff", 4)}) {
    grpc::Status s = RawCall(h.address(), method, bytes);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_NE(s.error_message().find("hybridcache.v1.CompleteRequest"), std::string::npos)
        << s.error_message();
  }
  EXPECT_EQ(h.worker(0).requests().size(), 1u);
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "abc"})->round, 1u);
  EXPECT_EQ(h.Counter("hc_router_requests_total", "code", "INVALID_ARGUMENT"), 3);
  // The router still serves.
  EXPECT_TRUE(h.Complete(RouterHarness::UserTurn("abc", "third")).status.ok());
}

TEST(RawRequestTest, MalformedGetAndDeleteRequestsAreInvalidArgument) {
  RouterHarness h(1);
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("abc", "first")).status.ok());
  v1::DeleteConversationRequest del;
  del.set_conversation_id("abc");
  std::string bad = del.SerializeAsString();
  bad[bad.find("abc")] = static_cast<char>(0xC3);
  for (const char* method : {"/hybridcache.v1.ChatService/GetConversation",
                             "/hybridcache.v1.ChatService/DeleteConversation"}) {
    grpc::Status s = RawCall(h.address(), method, bad);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
    EXPECT_NE(s.error_message().find("malformed request"), std::string::npos) << s.error_message();
  }
  EXPECT_EQ(h.ledger().Get(LedgerKey{"", "abc"})->round, 1u);
}

}  // namespace
}  // namespace hc::router
