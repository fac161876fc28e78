#include "common/text/tokenizer_config.h"

#include <filesystem>

#include "common/text/bpe_trainer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hc {
namespace {

std::unique_ptr<Tokenizer> SmallTokenizer() {
  BpeTrainerOptions opt;
  opt.vocab_size = 300;
  opt.special_tokens = {"<s>", "</s>"};
  auto tok = Tokenizer::FromJson(BpeTokenizerJson(TrainBpe("hello world", opt)));
  EXPECT_TRUE(tok.ok());
  return std::move(*tok);
}

TEST(TokenizerConfigTest, AddBosTokenDecidesWhenGiven) {
  auto tok = SmallTokenizer();
  auto yes = TokenizerConfig::FromJson(
      R"({"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>", "eos_token": "</s>"})");
  ASSERT_TRUE(yes.ok()) << yes.status();
  EXPECT_EQ(BosToPrepend(*yes, *tok), tok->TokenToId("<s>"));
  EXPECT_EQ(EosToAppend(*yes, *tok), std::nullopt);
  // An AddedToken object and a missing flag (the post-processor decides).
  auto absent = TokenizerConfig::FromJson(
      R"({"bos_token": {"content": "<s>", "special": true}, "add_eos_token": true, "eos_token": "</s>"})");
  ASSERT_TRUE(absent.ok()) << absent.status();
  EXPECT_EQ(absent->bos_token, "<s>");
  EXPECT_EQ(BosToPrepend(*absent, *tok), std::nullopt);
  EXPECT_EQ(EosToAppend(*absent, *tok), tok->TokenToId("</s>"));
}

TEST(TokenizerConfigTest, UnknownBosTokenPrependsNothing) {
  auto tok = SmallTokenizer();
  auto c = TokenizerConfig::FromJson(R"({"add_bos_token": true, "bos_token": "<BOS>"})");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(BosToPrepend(*c, *tok), std::nullopt);
}

TEST(TokenizerConfigTest, WrongTypesAreInvalidArgumentNamingTheKey) {
  auto c = TokenizerConfig::FromJson(R"({"add_bos_token": "yes"})");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), ::testing::HasSubstr("add_bos_token"));
  EXPECT_EQ(TokenizerConfig::FromJson("[]").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TokenizerConfigTest, MissingFileGivesAnEmptyConfig) {
  const std::string dir = ::testing::TempDir() + "/no_tokenizer_config";
  std::filesystem::create_directories(dir);
  auto c = TokenizerConfig::FromModelDir(dir);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->add_bos_token.has_value());
}

}  // namespace
}  // namespace hc
