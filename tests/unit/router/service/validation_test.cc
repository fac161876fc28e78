#include "router/service/validation.h"

#include "gtest/gtest.h"

namespace hc::router {
namespace {

hybridcache::v1::CompleteRequest Valid() {
  hybridcache::v1::CompleteRequest r;
  r.set_conversation_id("Ab0._:-");
  auto* m = r.add_messages();
  m->set_role("tool");
  m->set_content("ok \xF0\x9F\x98\x80");
  return r;
}

TEST(ValidationTest, AcceptsAWellFormedRequestAtTheLimits) {
  auto r = Valid();
  EXPECT_TRUE(ValidateCompleteRequest(r, 100).ok());
  r.set_conversation_id(std::string(128, 'x'));
  r.set_cache_salt(std::string(1024, '\0'));
  r.mutable_sampling()->set_temperature(0.0f);
  r.mutable_sampling()->set_top_p(1.0f);
  r.mutable_sampling()->set_max_tokens(1);
  EXPECT_TRUE(ValidateCompleteRequest(r, 100).ok());
}

TEST(ValidationTest, RejectsInvalidUtf8InMessagesAndStopStrings) {
  auto r = Valid();
  r.mutable_messages(0)->set_content("\xC3\x28");
  const absl::Status s = ValidateCompleteRequest(r, 100);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("messages[0].content"), std::string::npos);
  r = Valid();
  r.mutable_sampling()->add_stop("\xFF");
  EXPECT_EQ(ValidateCompleteRequest(r, 100).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ValidationTest, StopConditionsAreBoundedInCountAndLength) {
  auto r = Valid();
  for (int i = 0; i < kMaxStopStrings; ++i)
    r.mutable_sampling()->add_stop(std::string(kMaxStopStringBytes, 'a' + i % 26));
  for (int i = 0; i < kMaxStopTokenIds; ++i) r.mutable_sampling()->add_stop_token_ids(i);
  EXPECT_TRUE(ValidateCompleteRequest(r, 100).ok());

  auto many = r;
  many.mutable_sampling()->add_stop("one too many");
  absl::Status s = ValidateCompleteRequest(many, 100);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("at most 16"), std::string::npos) << s.message();

  auto longer = r;
  longer.mutable_sampling()->set_stop(0, std::string(kMaxStopStringBytes + 1, 'x'));
  s = ValidateCompleteRequest(longer, 100);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("sampling.stop[0] has 257 bytes"), std::string::npos) << s.message();

  auto ids = r;
  ids.mutable_sampling()->add_stop_token_ids(1);
  EXPECT_EQ(ValidateCompleteRequest(ids, 100).code(), absl::StatusCode::kInvalidArgument);
}

// top_k reaches the worker as an int; a larger value used to pass the router
// and come back from the worker as its error.
TEST(ValidationTest, RejectsTopKThatDoesNotFitAnInt) {
  auto r = Valid();
  r.mutable_sampling()->set_top_k(UINT32_MAX);
  const absl::Status s = ValidateCompleteRequest(r, 100);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("sampling.top_k"), std::string::npos) << s.message();
}

TEST(ValidationTest, RejectsBadKeysOnGetAndDeleteToo) {
  EXPECT_EQ(ValidateConversationKey("a b", "").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateConversationKey("", "").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateConversationKey("a", std::string(1025, 'x')).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateConversationKey("a", "").ok());
}

TEST(ValidationTest, TokenIdsMustBeBelowTheVocabulary) {
  hybridcache::v1::CompleteRequest r;
  r.set_conversation_id("c");
  r.add_suffix_token_ids(99);
  EXPECT_TRUE(ValidateCompleteRequest(r, 100).ok());
  r.add_suffix_token_ids(100);
  EXPECT_EQ(ValidateCompleteRequest(r, 100).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hc::router
