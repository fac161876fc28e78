#include "common/text/post_processor.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hc {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::StatusOr<PostProcessor> Parse(std::string_view text) {
  auto v = json::Parse(text);
  EXPECT_TRUE(v.ok());
  return PostProcessor::FromJson(&*v);
}

TEST(PostProcessorTest, TemplateProcessingPutsItsTokensAroundTheSequence) {
  auto p = Parse(R"({"type": "Sequence", "processors": [
      {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
      {"type": "TemplateProcessing",
       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                  {"SpecialToken": {"id": "</s>", "type_id": 0}}],
       "pair": [],
       "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
                          "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}]})");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(p->Apply(std::vector<int32_t>{7, 8}), ElementsAre(1, 7, 8, 2));
}

TEST(PostProcessorTest, NullAndByteLevelAddNothing) {
  auto null = PostProcessor::FromJson(nullptr);
  auto bl = Parse(R"({"type": "ByteLevel"})");
  ASSERT_TRUE(null.ok() && bl.ok());
  EXPECT_THAT(bl->Apply(std::vector<int32_t>{5}), ElementsAre(5));
  EXPECT_THAT(null->Apply(std::vector<int32_t>{}), ElementsAre());
}

TEST(PostProcessorTest, RefusesOthersNamingThem) {
  auto roberta = Parse(R"({"type": "RobertaProcessing"})");
  EXPECT_EQ(roberta.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(roberta.status().message(), HasSubstr("post_processor RobertaProcessing"));
  auto missing = Parse(R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<x>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {}})");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.status().message(), HasSubstr("<x>"));
}

}  // namespace
}  // namespace hc
