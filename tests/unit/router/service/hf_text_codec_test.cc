#include "router/service/hf_text_codec.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/bpe_trainer.h"
#include "common/chat_template.h"
#include "common/json.h"
#include "common/synthetic_tokenizer.h"
#include "common/tokenizer.h"
#include "gtest/gtest.h"

namespace hc::router {
namespace {

// A small Granite-style checkpoint's tokenizer files, trained here.
class HfTextCodecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/hf_text_codec_" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
    BpeTrainerOptions opt;
    opt.vocab_size = 400;
    opt.min_frequency = 1;
    opt.special_tokens = {"<|end_of_text|>", "<|pad|>", "<|start_of_role|>", "<|end_of_role|>"};
    const BpeModel model = TrainBpe(
        "Hello there, how are you today? The cache holds the state of each conversation. "
        "Emoji: \xF0\x9F\x98\x80 caf\xC3\xA9 na\xC3\xAFve. user assistant system",
        opt);
    std::ofstream(dir_ + "/tokenizer.json") << BpeTokenizerJson(model);
    json::Value config = json::Value::MakeObject();
    config.Set("chat_template", json::Value::String(ChatTemplate(ChatTemplate::Kind::kGranite).JinjaSource()));
    config.Set("eos_token", json::Value::String("<|end_of_text|>"));
    std::ofstream(dir_ + "/tokenizer_config.json") << json::Serialize(config);
    codec_ = HfTextCodec::FromModelDir(dir_).value();
    tokenizer_ = Tokenizer::FromFile(dir_ + "/tokenizer.json").value();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<uint32_t> Ids(const std::vector<TokenId>& v) { return {v.begin(), v.end()}; }

  std::string dir_;
  std::unique_ptr<HfTextCodec> codec_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(HfTextCodecTest, TurnByTurnEncodingEqualsEncodingTheWholeConversation) {
  const ChatTemplate tmpl(ChatTemplate::Kind::kGranite);
  const std::vector<TurnMessage> first = {{Role::kSystem, "Be brief."}, {Role::kUser, "Hello there"}};
  const EncodedTurn t1 = codec_->EncodeTurn(first, {.first_turn = true}).value();
  ASSERT_EQ(t1.message_begins.size(), 2u);
  EXPECT_EQ(t1.message_begins[0], 0u);

  // The model's reply, ending with the end-of-turn token (EOS).
  std::vector<uint32_t> reply = Ids(tokenizer_->Encode("how are you today?", false));
  reply.push_back(codec_->eos_token_id());
  const std::vector<TurnMessage> second = {{Role::kUser, "caf\xC3\xA9 \xF0\x9F\x98\x80"}};
  const EncodedTurn t2 =
      codec_->EncodeTurn(second, {.first_turn = false, .last_token = reply.back()}).value();

  std::vector<uint32_t> conversation = t1.tokens;
  conversation.insert(conversation.end(), reply.begin(), reply.end());
  conversation.insert(conversation.end(), t2.tokens.begin(), t2.tokens.end());
  const std::vector<ChatMessage> all = {{"system", "Be brief."},
                                        {"user", "Hello there"},
                                        {"assistant", "how are you today?"},
                                        {"user", "caf\xC3\xA9 \xF0\x9F\x98\x80"}};
  EXPECT_EQ(conversation, Ids(EncodeChat(*tokenizer_, tmpl, all, /*add_generation_prompt=*/true)));
}

TEST_F(HfTextCodecTest, ReplyCutShortIsClosedBeforeTheNextMessage) {
  const EncodedTurn t = codec_->EncodeTurn({{{Role::kUser, "Hello"}}},
                                           {.first_turn = false, .last_token = 42}).value();
  ASSERT_FALSE(t.tokens.empty());
  EXPECT_EQ(t.tokens[0], codec_->eos_token_id());
}

TEST_F(HfTextCodecTest, StreamingNeverEmitsHalfACharacter) {
  const std::vector<TokenId> ids = tokenizer_->Encode("\xF0\x9F\x98\x80 caf\xC3\xA9", false);
  auto decoder = codec_->NewStreamDecoder();
  std::string streamed;
  for (const TokenId id : ids) {
    const uint32_t u = static_cast<uint32_t>(id);
    const std::string piece = decoder->Push(std::span<const uint32_t>(&u, 1));
    EXPECT_TRUE(IsValidUtf8(piece)) << "partial character emitted";
    streamed += piece;
  }
  streamed += decoder->Flush();
  EXPECT_EQ(streamed, "\xF0\x9F\x98\x80 caf\xC3\xA9");
  EXPECT_EQ(codec_->Decode(std::vector<uint32_t>(ids.begin(), ids.end())), streamed);
}

TEST(MakeTextCodecTest, SyntheticModelWithoutItsCheckpointGetsTheSameTokenizer) {
  const std::string cache = ::testing::TempDir() + "/hc-cache-" + std::to_string(::getpid());
  setenv("HC_CACHE_DIR", cache.c_str(), 1);
  auto codec = MakeTextCodec("synthetic:tiny");
  ASSERT_TRUE(codec.ok()) << codec.status();
  EXPECT_TRUE(std::filesystem::exists(cache + "/synthetic-tiny-v1-tokenizer/tokenizer.json"));
  // The same ids as the tokenizer written into the synthetic checkpoint.
  ASSERT_TRUE(WriteSyntheticTokenizerFiles("tiny", cache + "/direct").ok());
  auto direct = HfTextCodec::FromModelDir(cache + "/direct").value();
  const std::vector<TurnMessage> m = {{Role::kUser, "Hello there, how are you?"}};
  EXPECT_EQ((*codec)->EncodeTurn(m, {}).value().tokens, direct->EncodeTurn(m, {}).value().tokens);
  EXPECT_EQ((*codec)->vocab_size(), 1024u);
  EXPECT_EQ(MakeTextCodec("synthetic:huge").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeTextCodec("/no/such/dir").status().code(), absl::StatusCode::kNotFound);
  std::filesystem::remove_all(cache);
  unsetenv("HC_CACHE_DIR");
}

}  // namespace
}  // namespace hc::router
