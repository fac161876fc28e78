#include "common/text/normalizer.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hc {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<std::unique_ptr<Normalizer>> Parse(std::string_view text) {
  auto v = json::Parse(text);
  EXPECT_TRUE(v.ok());
  return Normalizer::FromJson(&*v);
}

TEST(NormalizerTest, NullIsTheIdentity) {
  auto n = Normalizer::FromJson(nullptr);
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE((*n)->is_identity());
  EXPECT_EQ((*n)->Normalize("a\xEF\xAC\x81"), "a\xEF\xAC\x81");
}

TEST(NormalizerTest, UnicodeForms) {
  // "e" + U+0301 composes to U+00E9 under NFC; U+FB01 (fi ligature) and
  // U+FF21 (fullwidth A) fold under NFKC only.
  auto nfc = Parse(R"({"type": "NFC"})");
  auto nfkc = Parse(R"({"type": "NFKC"})");
  auto nfd = Parse(R"({"type": "NFD"})");
  ASSERT_TRUE(nfc.ok() && nfkc.ok() && nfd.ok());
  EXPECT_EQ((*nfc)->Normalize("e\xCC\x81 \xEF\xAC\x81"), "\xC3\xA9 \xEF\xAC\x81");
  EXPECT_EQ((*nfkc)->Normalize("\xEF\xAC\x81\xEF\xBC\xA1"), "fiA");
  EXPECT_EQ((*nfd)->Normalize("\xC3\xA9"), "e\xCC\x81");
}

TEST(NormalizerTest, SequenceOfReplaceAndPrependRunsInOrder) {
  auto n = Parse(R"({"type": "Sequence", "normalizers": [
      {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
      {"type": "Replace", "pattern": {"String": "."}, "content": "!"},
      {"type": "Prepend", "prepend": "\u2581"}]})");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ((*n)->Normalize("a  b.c"),
            "\xE2\x96\x81"
            "a b!c");
  EXPECT_EQ((*n)->Normalize(""), "");  // Prepend leaves empty text empty
}

TEST(NormalizerTest, RefusesUnknownNormalizersByName) {
  auto n = Parse(R"({"type": "Sequence", "normalizers": [{"type": "Lowercase"}]})");
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(n.status().message(), HasSubstr("normalizer Lowercase"));
  auto bad = Parse(R"({"type": "Replace", "pattern": {"String": ""}, "content": "x"})");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hc
