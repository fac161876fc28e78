#include "common/text/pre_tokenizer.h"

#include <string>

#include "common/text/pre_tokenizer_style.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hc {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::StatusOr<std::unique_ptr<PreTokenizer>> Parse(std::string_view text) {
  auto v = json::Parse(text);
  EXPECT_TRUE(v.ok());
  return PreTokenizer::FromJson(&*v);
}

std::vector<std::string> Words(const PreTokenizer& pre, std::string_view text) {
  std::vector<std::string_view> words;
  std::deque<std::string> arena;
  pre.Run(text, &words, &arena);
  return {words.begin(), words.end()};
}

TEST(PreTokenizerTest, Granite4StyleSplitsDigitsInThreesAndFoldsContractions) {
  const json::Value spec = PreTokenizerStyleJson(PreTokenizerStyle::kGranite4);
  auto pre = PreTokenizer::FromJson(&spec);
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_THAT(Words(**pre, "I'VE 1234567 items\n\n"),
              ElementsAre("I", "'VE", " ", "123", "456", "7", " items", "\n\n"));
}

TEST(PreTokenizerTest, NemotronHStyleSplitsCamelCaseAndSingleDigits) {
  const json::Value spec = PreTokenizerStyleJson(PreTokenizerStyle::kNemotronH);
  auto pre = PreTokenizer::FromJson(&spec);
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_THAT(Words(**pre, "camelCase 42 a/b"),
              ElementsAre("camel", "Case", " ", "4", "2", " a", "/b"));
}

TEST(PreTokenizerTest, ByteLevelAddsAPrefixSpaceToEachPiece) {
  auto pre = Parse(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"String": "|"}, "behavior": "Removed"},
      {"type": "ByteLevel", "add_prefix_space": true, "use_regex": false}]})");
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_THAT(Words(**pre, "ab|cd| e"), ElementsAre(" ab", " cd", " e"));
}

TEST(PreTokenizerTest, DigitsIndividuallyOrContiguous) {
  auto one = Parse(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Digits", "individual_digits": true}, {"type": "ByteLevel", "use_regex": false,
       "add_prefix_space": false}]})");
  auto runs = Parse(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Digits", "individual_digits": false}, {"type": "ByteLevel", "use_regex": false,
       "add_prefix_space": false}]})");
  ASSERT_TRUE(one.ok() && runs.ok());
  EXPECT_THAT(Words(**one, "a12b"), ElementsAre("a", "1", "2", "b"));
  EXPECT_THAT(Words(**runs, "a12b"), ElementsAre("a", "12", "b"));
}

TEST(PreTokenizerTest, RefusesWhatItCannotDoExactlyNamingIt) {
  struct Case {
    const char* json;
    absl::StatusCode code;
    const char* says;
  } cases[] = {
      {R"({"type": "Metaspace"})", absl::StatusCode::kUnimplemented, "pre_tokenizer Metaspace"},
      {R"({"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}, {"type": "Digits"}]})",
       absl::StatusCode::kUnimplemented, "after ByteLevel"},
      {R"({"type": "Digits"})", absl::StatusCode::kUnimplemented, "without ByteLevel"},
      {R"({"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Sideways"})",
       absl::StatusCode::kUnimplemented, "behavior Sideways"},
      {R"({"type": "Split", "pattern": {"Regex": "(("}, "behavior": "Isolated"})",
       absl::StatusCode::kInvalidArgument, "does not compile"},
      {R"({"type": "Split", "behavior": "Isolated"})", absl::StatusCode::kInvalidArgument,
       "pattern"},
      {R"({"type": "ByteLevel", "use_regex": "yes"})", absl::StatusCode::kInvalidArgument,
       "ByteLevel.use_regex"},
  };
  for (const Case& c : cases) {
    auto pre = Parse(c.json);
    ASSERT_FALSE(pre.ok()) << c.json;
    EXPECT_EQ(pre.status().code(), c.code) << c.json;
    EXPECT_THAT(pre.status().message(), HasSubstr(c.says)) << c.json;
  }
  EXPECT_EQ(PreTokenizer::FromJson(nullptr).status().code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace hc
