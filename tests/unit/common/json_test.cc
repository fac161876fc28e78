#include "common/json.h"

#include <cmath>
#include <limits>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hc::json {
namespace {

using ::testing::HasSubstr;

TEST(JsonTest, ParsesScalarsAndKeepsIntegersExact) {
  auto v = Parse(R"({"a": 9007199254740993, "b": -0.5, "c": true, "d": null, "e": 1e3})");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->Find("a")->is_int());
  EXPECT_EQ(v->Find("a")->AsInt64(), 9007199254740993LL);  // not representable as double
  EXPECT_FALSE(v->Find("b")->is_int());
  EXPECT_DOUBLE_EQ(v->Find("b")->AsDouble(), -0.5);
  EXPECT_TRUE(v->Find("c")->AsBool());
  EXPECT_TRUE(v->Find("d")->is_null());
  EXPECT_FALSE(v->Find("e")->is_int());
  EXPECT_DOUBLE_EQ(v->Find("e")->AsDouble(), 1000.0);
  EXPECT_EQ(v->Find("zz"), nullptr);
}

TEST(JsonTest, ObjectsKeepInsertionOrder) {
  auto v = Parse(R"({"zeta": 1, "alpha": 2, "mid": 3})");
  ASSERT_TRUE(v.ok());
  const auto& o = v->AsObject();
  ASSERT_EQ(o.size(), 3u);
  EXPECT_EQ(o[0].first, "zeta");
  EXPECT_EQ(o[1].first, "alpha");
  EXPECT_EQ(o[2].first, "mid");
  EXPECT_EQ(Serialize(*v), R"({"zeta":1,"alpha":2,"mid":3})");
}

TEST(JsonTest, DecodesUnicodeEscapesAndSurrogatePairs) {
  auto v = Parse(R"(["\u00e9\u4e2d", "\ud83d\ude00", "a\/b\\\"\n\t"])");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->AsArray()[0].AsString(), "\xC3\xA9\xE4\xB8\xAD");
  EXPECT_EQ(v->AsArray()[1].AsString(), "\xF0\x9F\x98\x80");
  EXPECT_EQ(v->AsArray()[2].AsString(), "a/b\\\"\n\t");
}

TEST(JsonTest, RejectsLoneSurrogatesAndInvalidUtf8) {
  EXPECT_FALSE(Parse(R"("\ud83d")").ok());
  EXPECT_FALSE(Parse(R"("\ude00")").ok());
  EXPECT_FALSE(Parse(R"("\ud83d\u0041")").ok());
  EXPECT_FALSE(Parse("\"\xC3\"").ok());
  EXPECT_FALSE(Parse("\"\xED\xA0\x80\"").ok());  // UTF-8 encoded surrogate
}

TEST(JsonTest, ErrorsNameTheByteOffset) {
  auto v = Parse(R"({"a": [1, 2,, 3]})");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("at byte 12"));
}

TEST(JsonTest, RejectsMalformedDocuments) {
  for (const char* bad :
       {"", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "1e", "tru", "\"abc", "{\"a\" 1}", "[1] x",
        "{\"a\":1,\"a\":2}", "\"\x01\"", "NaN", "Infinity", "[\"\\x\"]", "1e999"}) {
    EXPECT_FALSE(Parse(bad).ok()) << "accepted: " << bad;
  }
}

TEST(JsonTest, DuplicateKeysDetectedInLargeObjects) {
  std::string doc = "{";
  for (int i = 0; i < 100; ++i) doc += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  EXPECT_TRUE(Parse(doc + "\"k100\":1}").ok());
  auto dup = Parse(doc + "\"k42\":1}");
  ASSERT_FALSE(dup.ok());
  EXPECT_THAT(dup.status().message(), HasSubstr("duplicate object key \"k42\""));
}

TEST(JsonTest, NanInfinityOnlyWhenAllowed) {
  ParseOptions opt;
  opt.allow_nan_infinity = true;
  auto v = Parse("[0.0, Infinity, -Infinity, NaN]", opt);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(std::isinf(v->AsArray()[1].AsDouble()));
  EXPECT_LT(v->AsArray()[2].AsDouble(), 0);
  EXPECT_TRUE(std::isnan(v->AsArray()[3].AsDouble()));
  EXPECT_EQ(Serialize(*v), "[0.0,null,null,null]");
  EXPECT_EQ(Serialize(*v, {.allow_nan_infinity = true}), "[0.0,Infinity,-Infinity,NaN]");
}

TEST(JsonTest, DepthLimitStopsDeepNesting) {
  std::string deep(1000, '[');
  deep += std::string(1000, ']');
  auto v = Parse(deep);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("nesting too deep"));
}

TEST(JsonTest, TenMillionOpenBracketsAreAnErrorNotAStackOverflow) {
  for (const char open : {'[', '{'}) {
    std::string deep(10'000'000, open);
    if (open == '{') {
      deep.clear();
      for (int i = 0; i < 1'000'000; ++i) deep += "{\"a\":";
    }
    auto v = Parse(deep);
    ASSERT_FALSE(v.ok());
    EXPECT_THAT(v.status().message(), HasSubstr("nesting too deep"));
    EXPECT_THAT(v.status().message(), HasSubstr("at byte"));
  }
  // Up to the limit is fine.
  std::string ok(200, '[');
  ok += std::string(200, ']');
  EXPECT_TRUE(Parse(ok).ok());
}

TEST(JsonTest, ErrorsSayWhereAndWhat) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"a": 1e400})", "number overflow parsing '1e400'"},
      {R"({"a": 1, "a": 2})", "duplicate object key \"a\""},
      {"[\"\xC3\"]", "ill-formed UTF-8 byte"},
      {R"(["\ud83d"])", "surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF"},
      {"[1, 2", "at byte 5"},
      {"", "at byte 0"},
      {"[1] x", "at byte 4"},
  };
  for (const auto& [doc, want] : cases) {
    auto v = Parse(doc);
    ASSERT_FALSE(v.ok()) << doc;
    EXPECT_THAT(v.status().message(), HasSubstr(want)) << doc;
    EXPECT_THAT(v.status().message(), HasSubstr("JSON parse error at byte")) << doc;
  }
}

TEST(JsonTest, BigIntegersBeyondInt64AreDoubles) {
  auto v = Parse(
      "[9223372036854775807, 9223372036854775808, -9223372036854775808, "
      "18446744073709551616, 123456789012345678901234567890]");
  ASSERT_TRUE(v.ok()) << v.status();
  const auto& a = v->AsArray();
  EXPECT_TRUE(a[0].is_int());
  EXPECT_EQ(a[0].AsInt64(), INT64_MAX);
  EXPECT_FALSE(a[1].is_int());
  EXPECT_DOUBLE_EQ(a[1].AsDouble(), 9223372036854775808.0);
  EXPECT_TRUE(a[2].is_int());
  EXPECT_EQ(a[2].AsInt64(), INT64_MIN);
  EXPECT_FALSE(a[3].is_int());
  EXPECT_DOUBLE_EQ(a[4].AsDouble(), 1.2345678901234568e29);
}

TEST(JsonTest, NanAndInfinityAreWordsOnlyOutsideStrings) {
  auto v = Parse(R"({"NaN": "Infinity -Infinity NaN \" NaN", "x": [NaN, -Infinity]})",
                 {.allow_nan_infinity = true});
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->Find("NaN")->AsString(), "Infinity -Infinity NaN \" NaN");
  EXPECT_TRUE(std::isnan(v->Find("x")->AsArray()[0].AsDouble()));
  // An error after a replaced word still names the original byte.
  auto bad = Parse("[NaN, Infinity, x]", {.allow_nan_infinity = true});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("at byte 16"));
}

TEST(JsonTest, EnsureAsciiEscapesNonAscii) {
  Value v = Value::String("\xC3\xA9\xF0\x9F\x98\x80\x01");
  EXPECT_EQ(Serialize(v, {.ensure_ascii = true}), R"("\u00e9\ud83d\ude00\u0001")");
  EXPECT_EQ(Serialize(v), "\"\xC3\xA9\xF0\x9F\x98\x80\\u0001\"");
}

TEST(JsonTest, DoublesRoundTripExactly) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> exp_dist(-30, 30);
  for (int i = 0; i < 2000; ++i) {
    const double d = std::pow(10.0, exp_dist(rng)) * ((rng() & 1) ? -1 : 1);
    auto back = Parse(Serialize(Value::Double(d)));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(back->AsDouble(), d);
    EXPECT_FALSE(back->is_int());
  }
  EXPECT_EQ(Serialize(Value::Double(1.0)), "1.0");
  EXPECT_EQ(Serialize(Value::Double(1e-5)), "1e-05");
}

// Builds a random document, writes it (compact and pretty) and parses it back.
Value RandomValue(std::mt19937_64& rng, int depth) {
  const int kind = depth > 3 ? static_cast<int>(rng() % 5) : static_cast<int>(rng() % 7);
  switch (kind) {
    case 0:
      return Value();
    case 1:
      return Value::Bool(rng() & 1);
    case 2:
      return Value::Int(static_cast<int64_t>(rng()));
    case 3:
      return Value::Double(static_cast<double>(static_cast<int32_t>(rng())) / 1024.0 + 0.25);
    case 4: {
      std::string s;
      const int n = static_cast<int>(rng() % 8);
      const char* pieces[] = {"a", "\"", "\\", "\n", "\xC3\xA9", "\xF0\x9F\x8E\x89", "\x1F", "/"};
      for (int i = 0; i < n; ++i) s += pieces[rng() % 8];
      return Value::String(s);
    }
    case 5: {
      Value a = Value::MakeArray();
      const int n = static_cast<int>(rng() % 4);
      for (int i = 0; i < n; ++i) a.Append(RandomValue(rng, depth + 1));
      return a;
    }
    default: {
      Value o = Value::MakeObject();
      const int n = static_cast<int>(rng() % 4);
      for (int i = 0; i < n; ++i)
        o.Set("k" + std::to_string(rng() % 100), RandomValue(rng, depth + 1));
      return o;
    }
  }
}

TEST(JsonTest, RandomDocumentsRoundTrip) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 300; ++i) {
    const Value v = RandomValue(rng, 0);
    for (const WriteOptions& opt :
         {WriteOptions{}, WriteOptions{.indent = 2, .ensure_ascii = true}}) {
      auto back = Parse(Serialize(v, opt));
      ASSERT_TRUE(back.ok()) << back.status() << "\n" << Serialize(v, opt);
      EXPECT_EQ(*back, v) << Serialize(v, opt);
    }
  }
}

TEST(JsonTest, MutatedDocumentsNeverCrash) {
  std::mt19937_64 rng(5);
  const std::string base = Serialize(RandomValue(rng, 0), {.indent = 1}) +
                           R"({"a": [1, -2.5e3, "x\u00e9\ud83d\ude00"], "b": {"c": null}})";
  const char kBytes[] = "{}[]\",:0123456789eE+-.tfnul \\\x80\xff";
  for (int i = 0; i < 3000; ++i) {
    std::string doc = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % doc.size();
      switch (rng() % 3) {
        case 0:
          doc[pos] = kBytes[rng() % (sizeof(kBytes) - 1)];
          break;
        case 1:
          doc.erase(pos, 1 + rng() % 3);
          break;
        default:
          doc.insert(pos, 1, kBytes[rng() % (sizeof(kBytes) - 1)]);
          break;
      }
      if (doc.empty()) doc = "x";
    }
    auto v = Parse(doc);
    if (v.ok()) {
      // Whatever parsed must serialize and parse back to the same value.
      auto again = Parse(Serialize(*v));
      ASSERT_TRUE(again.ok()) << doc;
      EXPECT_EQ(*again, *v);
    } else {
      EXPECT_THAT(v.status().message(), HasSubstr("at byte"));
    }
  }
}

}  // namespace
}  // namespace hc::json
