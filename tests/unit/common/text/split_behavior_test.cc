#include "common/text/split_behavior.h"

#include <string>

#include "common/text/unicode_regex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hc {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Apply(std::string_view text, std::string_view pattern,
                               SplitBehavior behavior, bool invert = false) {
  auto re = UnicodeRegex::Compile(pattern);
  EXPECT_TRUE(re.ok());
  std::vector<std::pair<size_t, size_t>> matches;
  (*re)->FindAll(text, &matches);
  std::vector<std::string_view> pieces;
  ApplySplitBehavior(text, matches, behavior, invert, &pieces);
  return {pieces.begin(), pieces.end()};
}

// The examples of the `tokenizers` documentation (SplitDelimiterBehavior).
TEST(SplitBehaviorTest, FollowsTheTokenizersDocumentationExamples) {
  const std::string_view t = "the-final--countdown";
  EXPECT_THAT(Apply(t, "-", SplitBehavior::kRemoved), ElementsAre("the", "final", "countdown"));
  EXPECT_THAT(Apply(t, "-", SplitBehavior::kIsolated),
              ElementsAre("the", "-", "final", "-", "-", "countdown"));
  EXPECT_THAT(Apply(t, "-", SplitBehavior::kMergedWithPrevious),
              ElementsAre("the-", "final-", "-", "countdown"));
  EXPECT_THAT(Apply(t, "-", SplitBehavior::kMergedWithNext),
              ElementsAre("the", "-final", "-", "-countdown"));
  EXPECT_THAT(Apply(t, "-", SplitBehavior::kContiguous),
              ElementsAre("the", "-", "final", "--", "countdown"));
}

TEST(SplitBehaviorTest, InvertMakesTheGapsTheDelimiters) {
  EXPECT_THAT(Apply("ab12cd3", R"(\p{N}+)", SplitBehavior::kRemoved, /*invert=*/true),
              ElementsAre("12", "3"));
  EXPECT_THAT(Apply("-a-", "-", SplitBehavior::kMergedWithPrevious, /*invert=*/true),
              ElementsAre("-a", "-"));
}

TEST(SplitBehaviorTest, MatchesAtTheEdgesLeaveNoEmptyPieces) {
  EXPECT_THAT(Apply("-a-", "-", SplitBehavior::kMergedWithNext), ElementsAre("-a", "-"));
  EXPECT_THAT(Apply("--", "-", SplitBehavior::kRemoved), ElementsAre());
  EXPECT_THAT(Apply("", "-", SplitBehavior::kIsolated), ElementsAre());
}

TEST(SplitBehaviorTest, ParsesTheJsonNames) {
  EXPECT_EQ(ParseSplitBehavior("MergedWithNext"), SplitBehavior::kMergedWithNext);
  EXPECT_EQ(ParseSplitBehavior("Contiguous"), SplitBehavior::kContiguous);
  EXPECT_EQ(ParseSplitBehavior("isolated"), std::nullopt);  // the JSON form is capitalised
}

TEST(UnicodeRegexTest, ReportsAPatternThatDoesNotCompile) {
  auto re = UnicodeRegex::Compile("a(b");
  ASSERT_FALSE(re.ok());
  EXPECT_EQ(re.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(re.status().message(), ::testing::HasSubstr("a(b"));
}

TEST(UnicodeRegexTest, EmptyMatchesStepOneCharacter) {
  auto re = UnicodeRegex::Compile("x*");
  ASSERT_TRUE(re.ok());
  std::vector<std::pair<size_t, size_t>> m;
  (*re)->FindAll("\xC3\xA9xx", &m);  // "éxx"
  // Empty at 0, then "xx" at 2..4 (after stepping over the 2-byte é), then
  // nothing more: an empty match where the last one ended is skipped.
  EXPECT_THAT(m, ElementsAre(std::pair<size_t, size_t>{0, 0}, std::pair<size_t, size_t>{2, 4}));
}

TEST(UnicodeRegexTest, LiteralPatternsEscapeEveryMetacharacter) {
  auto re = UnicodeRegex::CompileLiteral("a.b*(c)[d]{2}|^$\\");
  ASSERT_TRUE(re.ok());
  std::vector<std::pair<size_t, size_t>> m;
  (*re)->FindAll("xa.b*(c)[d]{2}|^$\\y aXbbc", &m);
  EXPECT_THAT(m, ElementsAre(std::pair<size_t, size_t>{1, 18}));
}

TEST(UnicodeRegexTest, CaseInsensitiveGroupsFoldLikeTokenizers) {
  // The cl100k contraction group (?i:'s|...) folds U+017F LONG S to 's' and
  // U+212A KELVIN SIGN to 'k' in Oniguruma, as in `tokenizers`.
  auto re = UnicodeRegex::Compile("(?i:'s)");
  ASSERT_TRUE(re.ok());
  std::vector<std::pair<size_t, size_t>> m;
  (*re)->FindAll("'S '\xC5\xBF", &m);
  EXPECT_EQ(m.size(), 2u);
}

}  // namespace
}  // namespace hc
