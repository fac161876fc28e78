#include "common/text/added_vocabulary.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hc {
namespace {

// Segments as "text" for ordinary text and "<id:text>" for tokens.
std::string Show(std::string_view text, const std::vector<TextSegment>& segs) {
  std::string out;
  for (const TextSegment& s : segs) {
    const std::string_view piece = text.substr(s.begin, s.end - s.begin);
    out += s.id < 0 ? "[" + std::string(piece) + "]"
                    : "<" + std::to_string(s.id) + ":" + std::string(piece) + ">";
  }
  return out;
}

std::string Split(const std::vector<AddedToken>& tokens, std::string_view text,
                  bool special_ok = true) {
  std::vector<std::string> patterns;
  for (const AddedToken& t : tokens) patterns.push_back(t.content);
  AddedTokenMatcher m(tokens, patterns);
  std::vector<TextSegment> segs;
  m.Split(
      text, [special_ok](size_t) { return special_ok; }, &segs);
  return Show(text, segs);
}

// Expected segments below are what `tokenizers` 0.23.3 gives (its
// AddedVocabulary::find_matches), checked by python_tokenizer_diff on
// generated text.
TEST(AddedTokenMatcherTest, LongestTokenAtTheLeftmostPositionWins) {
  const std::vector<AddedToken> t = {{.id = 1, .content = "<tool"},
                                     {.id = 2, .content = "<tool_call>"}};
  EXPECT_EQ(Split(t, "a<tool_call>b<toolx"), "[a]<2:<tool_call>>[b]<1:<tool>[x]");
}

TEST(AddedTokenMatcherTest, LstripAndRstripTakeTheNeighbouringWhitespace) {
  const std::vector<AddedToken> t = {{.id = 1, .content = "[L]", .lstrip = true},
                                     {.id = 2, .content = "[R]", .rstrip = true}};
  EXPECT_EQ(Split(t, "a \t[L] b"), "[a]<1: \t[L]>[ b]");
  EXPECT_EQ(Split(t, "a [R] \n b"), "[a ]<2:[R] \n >[b]");
  // lstrip does not reach back into the previous token.
  EXPECT_EQ(Split(t, "[R]  [L]x"), "<2:[R]  ><1:[L]>[x]");
}

TEST(AddedTokenMatcherTest, SingleWordNeedsNonWordNeighbours) {
  const std::vector<AddedToken> t = {{.id = 1, .content = "word", .single_word = true}};
  EXPECT_EQ(Split(t, "a word."), "[a ]<1:word>[.]");
  EXPECT_EQ(Split(t, "swords"), "[swords]");
  // Marks and connector punctuation are word characters, U+00B2 is not.
  EXPECT_EQ(Split(t, "\xCC\x81word"), "[\xCC\x81word]");
  EXPECT_EQ(Split(t, "\xC2\xB2word"), "[\xC2\xB2]<1:word>");
}

TEST(AddedTokenMatcherTest, AForbiddenSpecialTokenStaysTextAndHidesShorterOnes) {
  const std::vector<AddedToken> t = {{.id = 1, .content = "<|end|>", .special = true},
                                     {.id = 2, .content = "<|e"}};
  EXPECT_EQ(Split(t, "x<|end|>", /*special_ok=*/true), "[x]<1:<|end|>>");
  // The longest match is rejected and still consumes its text: the shorter
  // token of the same matcher is not tried there (`tokenizers` with
  // encode_special_tokens; a shorter *normalized* token would match later,
  // in the normalized pass).
  EXPECT_EQ(Split(t, "x<|end|>", /*special_ok=*/false), "[x<|end|>]");
}

}  // namespace
}  // namespace hc
