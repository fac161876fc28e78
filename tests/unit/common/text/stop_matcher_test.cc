#include "common/text/stop_matcher.h"

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace hc {
namespace {

using Match = StopMatcher::Match;

// Feeds `pieces` in order; returns the first match.
std::optional<Match> FeedAll(StopMatcher& m, const std::vector<std::string>& pieces) {
  for (const std::string& p : pieces) {
    if (auto match = m.Feed(p)) return match;
  }
  return std::nullopt;
}

// The definition: the first end position at which some stop string ends; the
// longest of those ending there.
std::optional<Match> Naive(const std::string& text, const std::vector<std::string>& stops) {
  for (size_t end = 1; end <= text.size(); ++end) {
    size_t best = 0;
    for (const std::string& s : stops) {
      if (!s.empty() && s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0) {
        best = std::max(best, s.size());
      }
    }
    if (best > 0) return Match{static_cast<int64_t>(end - best), static_cast<int64_t>(end)};
  }
  return std::nullopt;
}

void ExpectMatch(const std::optional<Match>& m, int64_t begin, int64_t end) {
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->begin, begin);
  EXPECT_EQ(m->end, end);
}

TEST(StopMatcherTest, NoStopStringsNeverMatchAndHoldNothing) {
  StopMatcher m;
  EXPECT_TRUE(m.empty());
  EXPECT_FALSE(m.Feed("anything at all").has_value());
  EXPECT_EQ(m.HeldBytes(), 0);
  EXPECT_EQ(m.offset(), 15);
}

TEST(StopMatcherTest, MatchesAcrossTokenBoundaries) {
  const std::vector<std::string> stops = {"STOP"};
  StopMatcher m(stops);
  EXPECT_FALSE(m.Feed("abc S").has_value());
  EXPECT_EQ(m.HeldBytes(), 1);
  EXPECT_FALSE(m.Feed("T").has_value());
  EXPECT_FALSE(m.Feed("O").has_value());
  EXPECT_EQ(m.HeldBytes(), 3);
  ExpectMatch(m.Feed("Pxyz"), 4, 8);
  // The bytes after the match are not consumed, and the stream stays stopped.
  EXPECT_EQ(m.offset(), 8);
  ExpectMatch(m.Feed("more"), 4, 8);
  EXPECT_EQ(m.offset(), 8);
  EXPECT_EQ(m.HeldBytes(), 4);
}

TEST(StopMatcherTest, APartialMatchThatFailsIsReleasedAndRestartsAtItsSuffix) {
  const std::vector<std::string> stops = {"abab"};
  StopMatcher m(stops);
  EXPECT_FALSE(m.Feed("aba").has_value());
  EXPECT_EQ(m.HeldBytes(), 3);
  EXPECT_FALSE(m.Feed("a").has_value());  // "abaa": only "a" may still start it
  EXPECT_EQ(m.HeldBytes(), 1);
  ExpectMatch(m.Feed("bab"), 3, 7);
}

TEST(StopMatcherTest, OverlappingStopStringsStopAtTheFirstEnd) {
  // "bc" ends (at byte 3) before "abcd" (at byte 4) would.
  const std::vector<std::string> stops = {"abcd", "bc"};
  StopMatcher m(stops);
  ExpectMatch(m.Feed("xabcd"), 2, 4);
  // Held back while undecided: "abc" could still be the longer one.
  StopMatcher n(stops);
  EXPECT_FALSE(n.Feed("xab").has_value());
  EXPECT_EQ(n.HeldBytes(), 2);
}

TEST(StopMatcherTest, OfStringsEndingTogetherTheLongestWins) {
  const std::vector<std::string> stops = {"cd", "abcd", "bcd"};
  StopMatcher m(stops);
  ExpectMatch(m.Feed("zzabcdzz"), 2, 6);
}

TEST(StopMatcherTest, AStopStringThatIsAPrefixOfAnotherStopsFirst) {
  const std::vector<std::string> stops = {"end of story", "end"};
  StopMatcher m(stops);
  EXPECT_FALSE(m.Feed("the e").has_value());
  EXPECT_EQ(m.HeldBytes(), 1);
  ExpectMatch(m.Feed("nd of story"), 4, 7);
}

TEST(StopMatcherTest, MultibyteUtf8IsMatchedByBytesEvenWhenSplitMidCharacter) {
  const std::string stop = "\xE2\x9C\x93 ok";  // U+2713 CHECK MARK, " ok"
  const std::vector<std::string> stops = {stop};
  StopMatcher m(stops);
  EXPECT_FALSE(m.Feed("fine \xE2").has_value());
  EXPECT_EQ(m.HeldBytes(), 1);
  EXPECT_FALSE(m.Feed("\x9C").has_value());
  ExpectMatch(m.Feed("\x93 ok!"), 5, 11);
  // A different character sharing the lead byte is not a match.
  StopMatcher other(stops);
  EXPECT_FALSE(other.Feed("\xE2\x9C\x94 ok").has_value());
  EXPECT_EQ(other.HeldBytes(), 0);
}

TEST(StopMatcherTest, SharedPrefixesShareStates) {
  const std::vector<std::string> stops = {"abc", "abd", "ab"};
  StopMatcher m(stops);
  EXPECT_EQ(m.num_states(), 1u + 4u);  // root, a, ab, abc, abd
}

TEST(StopMatcherTest, AgreesWithTheDefinitionOnRandomTextsAndSplits) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> letter(0, 2);  // a tiny alphabet: many overlaps
  for (int round = 0; round < 500; ++round) {
    std::vector<std::string> stops(1 + rng() % 4);
    for (auto& s : stops) {
      s.resize(1 + rng() % 5);
      for (char& c : s) c = static_cast<char>('a' + letter(rng));
    }
    std::string text(rng() % 30, 'a');
    for (char& c : text) c = static_cast<char>('a' + letter(rng));
    // Random token split.
    std::vector<std::string> pieces;
    for (size_t i = 0; i < text.size();) {
      const size_t n = std::min<size_t>(text.size() - i, 1 + rng() % 4);
      pieces.push_back(text.substr(i, n));
      i += n;
    }
    StopMatcher m(stops);
    const std::optional<Match> got = FeedAll(m, pieces);
    const std::optional<Match> want = Naive(text, stops);
    ASSERT_EQ(got.has_value(), want.has_value()) << text;
    if (want.has_value()) {
      EXPECT_EQ(got->begin, want->begin) << text;
      EXPECT_EQ(got->end, want->end) << text;
    } else {
      // Held back: exactly the longest suffix that is a prefix of a stop string.
      int64_t held = 0;
      for (const std::string& s : stops) {
        for (size_t k = std::min(s.size(), text.size()); k > 0; --k) {
          if (text.compare(text.size() - k, k, s, 0, k) == 0) {
            held = std::max<int64_t>(held, static_cast<int64_t>(k));
            break;
          }
        }
      }
      EXPECT_EQ(m.HeldBytes(), held) << text;
    }
  }
}

}  // namespace
}  // namespace hc
