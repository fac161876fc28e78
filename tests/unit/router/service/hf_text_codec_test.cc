#include "router/service/hf_text_codec.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/text/bpe_trainer.h"
#include "common/text/chat_template.h"
#include "common/text/synthetic_tokenizer.h"
#include "common/text/tokenizer.h"
#include "gtest/gtest.h"
#include "router/service/reply_stream.h"

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
    config.Set("chat_template",
               json::Value::String(ChatTemplate(ChatTemplate::Kind::kGranite).JinjaSource()));
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

TEST_F(HfTextCodecTest, EncodeBytesSpellsAnyBytesExactlyWithoutSpecialTokens) {
  for (const std::string& bytes :
       {std::string("Hello"), std::string(" there, how"), std::string("caf\xC3"),
        std::string("\x9F\x98\x80 ok"), std::string("<|end_of_text|>"), std::string("\xFF\xFE"),
        std::string()}) {
    const std::vector<uint32_t> ids = codec_->EncodeBytes(bytes);
    EXPECT_EQ(codec_->TokenBytes(ids), bytes);
    for (const uint32_t id : ids)
      EXPECT_FALSE(tokenizer_->IsSpecial(static_cast<TokenId>(id))) << bytes;
  }
}

TEST_F(HfTextCodecTest, StreamDecoderOverBytesEqualsDecode) {
  const std::vector<uint32_t> ids =
      Ids(tokenizer_->Encode("Emoji: \xF0\x9F\x98\x80 caf\xC3\xA9", false));
  const std::string bytes = codec_->TokenBytes(ids);
  auto d = codec_->NewStreamDecoder();
  std::string text;
  for (const char b : bytes) text += d->PushBytes(std::string_view(&b, 1));
  text += d->Flush();
  EXPECT_EQ(text, codec_->Decode(ids));
}

TEST_F(HfTextCodecTest, ReplyStreamCutsInsideATokenAndReencodesItsLead) {
  // The worker's tokens; a stop string beginning one byte into a token of at
  // least three bytes and running into the next token.
  const std::vector<uint32_t> ids =
      Ids(tokenizer_->Encode("Hello there, how are you today? The cache", false));
  const std::string all = codec_->TokenBytes(ids);
  size_t k = 1, begin = codec_->TokenBytes(std::span(ids).first(1)).size();
  for (; k + 1 < ids.size(); ++k) {
    const size_t len = codec_->TokenBytes(std::span(ids).subspan(k, 1)).size();
    if (len >= 3 && all.find(all.substr(begin + 1, len - 1 + 1)) == begin + 1) break;
    begin += len;
  }
  ASSERT_LT(k + 1, ids.size()) << "no token of 3+ bytes";
  const size_t len = codec_->TokenBytes(std::span(ids).subspan(k, 1)).size();
  const std::string stop = all.substr(begin + 1, len);  // into the next token
  const std::vector<std::string> stops = {stop};
  ReplyStream s(codec_.get(), stops);
  std::vector<ReplyStream::Chunk> chunks;
  for (size_t i = 0; i <= k + 1; ++i) {
    const float lp = -1.0f;
    chunks.push_back(s.Push(std::span(ids).subspan(i, 1), std::span(&lp, 1)));
  }
  hybridcache::v1::CommitReport report;
  report.mutable_stop_string()->set_reply_bytes(static_cast<uint32_t>(begin + 1));
  report.mutable_stop_string()->set_tokens_before(static_cast<uint32_t>(k));
  const auto rest = s.Finish(report);
  ASSERT_TRUE(rest.ok()) << rest.status();
  chunks.push_back(*rest);

  std::string text;
  std::vector<uint32_t> streamed;
  size_t nan = 0;
  for (const auto& c : chunks) {
    EXPECT_EQ(c.text.find(stop), std::string::npos);
    text += c.text;
    streamed.insert(streamed.end(), c.token_ids.begin(), c.token_ids.end());
    ASSERT_EQ(c.logprobs.size(), c.token_ids.size());
    for (const float lp : c.logprobs) nan += std::isnan(lp);
  }
  EXPECT_EQ(text, all.substr(0, begin + 1));
  EXPECT_EQ(streamed, s.reply_tokens());
  // The reply's tokens decode exactly to its text: whole tokens before the
  // cut one, then its first byte re-encoded.
  EXPECT_EQ(codec_->Decode(s.reply_tokens()), text);
  EXPECT_EQ(std::vector<uint32_t>(s.reply_tokens().begin(), s.reply_tokens().begin() + k),
            std::vector<uint32_t>(ids.begin(), ids.begin() + k));
  EXPECT_EQ(nan, s.reply_tokens().size() - k);
  EXPECT_GE(nan, 1u);
}

TEST_F(HfTextCodecTest, TurnByTurnEncodingEqualsEncodingTheWholeConversation) {
  const ChatTemplate tmpl(ChatTemplate::Kind::kGranite);
  const std::vector<TurnMessage> first = {{Role::kSystem, "Be brief."},
                                          {Role::kUser, "Hello there"}};
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
  const EncodedTurn t =
      codec_->EncodeTurn({{{Role::kUser, "Hello"}}}, {.first_turn = false, .last_token = 42})
          .value();
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
