#include "router/service/text_codec.h"

#include <random>

#include "gtest/gtest.h"

namespace hc::router {
namespace {

std::string EncodeUtf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80)
    s += static_cast<char>(cp);
  else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

std::vector<uint32_t> Bytes(std::string_view s) {
  return std::vector<uint32_t>(reinterpret_cast<const unsigned char*>(s.data()),
                               reinterpret_cast<const unsigned char*>(s.data()) + s.size());
}

TEST(ByteTextCodecTest, RandomUnicodeRoundTripsThroughStreamingDecodeInRandomChunks) {
  std::mt19937 rng(1234);
  ByteTextCodec codec;
  for (int trial = 0; trial < 200; ++trial) {
    std::string text;
    for (int i = 0; i < 50; ++i) {
      uint32_t cp;
      do cp = std::uniform_int_distribution<uint32_t>(1, 0x10FFFF)(rng);
      while (cp >= 0xD800 && cp <= 0xDFFF);
      text += EncodeUtf8(cp);
    }
    const std::vector<uint32_t> ids = Bytes(text);
    EXPECT_EQ(codec.Decode(ids), text);
    auto dec = codec.NewStreamDecoder();
    std::string streamed;
    for (size_t at = 0; at < ids.size();) {
      const size_t n =
          std::min<size_t>(ids.size() - at, std::uniform_int_distribution<size_t>(1, 5)(rng));
      const std::string piece = dec->Push(std::span<const uint32_t>(ids.data() + at, n));
      EXPECT_TRUE(IsValidUtf8(piece));
      streamed += piece;
      at += n;
    }
    streamed += dec->Flush();
    EXPECT_EQ(streamed, text);
  }
}

TEST(ByteTextCodecTest, EmojiSplitAcrossTokensIsHeldBackUntilComplete) {
  ByteTextCodec codec;
  auto dec = codec.NewStreamDecoder();
  const std::vector<uint32_t> emoji = Bytes("\xF0\x9F\x98\x80");
  EXPECT_EQ(dec->Push(std::vector<uint32_t>{'a', emoji[0]}), "a");
  EXPECT_EQ(dec->Push(std::vector<uint32_t>{emoji[1]}), "");
  EXPECT_EQ(dec->Push(std::vector<uint32_t>{emoji[2]}), "");
  EXPECT_EQ(dec->Push(std::vector<uint32_t>{emoji[3], ByteTextCodec::kEos}), "\xF0\x9F\x98\x80");
  EXPECT_EQ(dec->Flush(), "");
}

TEST(ByteTextCodecTest, InvalidBytesBecomeReplacementCharacters) {
  ByteTextCodec codec;
  EXPECT_EQ(codec.Decode(Bytes("a\xFF"
                               "b")),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(codec.Decode(Bytes("\xED\xA0\x80")),
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  auto dec = codec.NewStreamDecoder();
  EXPECT_EQ(dec->Push(Bytes("\xE2\x82")), "");
  EXPECT_EQ(dec->Flush(), "\xEF\xBF\xBD");  // cut-off character at the end
}

TEST(Utf8Test, RejectsOverlongsSurrogatesAndOutOfRange) {
  EXPECT_TRUE(IsValidUtf8("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\xAF"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));          // truncated
}

TEST(ByteTextCodecTest, TemplateMarksMessagesAndEndsWithTheGenerationPrompt) {
  ByteTextCodec codec;
  auto enc = codec.EncodeTurn(std::vector<TurnMessage>{{Role::kSystem, "S"}, {Role::kUser, "U"}},
                              TurnContext{});
  ASSERT_TRUE(enc.ok());
  ASSERT_EQ(enc->message_ends.size(), 2u);
  std::vector<uint32_t> sys = {ByteTextCodec::kStart};
  for (char c : std::string("system\nS")) sys.push_back(static_cast<unsigned char>(c));
  sys.push_back(ByteTextCodec::kEnd);
  EXPECT_EQ(std::vector<uint32_t>(enc->tokens.begin(), enc->tokens.begin() + enc->message_ends[0]),
            sys);
  EXPECT_EQ(enc->message_begins[1], enc->message_ends[0]);
  const std::string gen = codec.Decode(
      std::vector<uint32_t>(enc->tokens.begin() + enc->message_ends[1], enc->tokens.end()));
  EXPECT_EQ(gen, "assistant\n");
  EXPECT_EQ(enc->tokens[enc->message_ends[1]], ByteTextCodec::kStart);
  // After a reply that ended with EOS nothing is closed; after a cut one, <|end|> is.
  TurnContext after_eos{false, ByteTextCodec::kEos};
  EXPECT_EQ(codec.EncodeTurn(std::vector<TurnMessage>{{Role::kUser, "U"}}, after_eos)->tokens[0],
            ByteTextCodec::kStart);
  TurnContext cut{false, 'x'};
  EXPECT_EQ(codec.EncodeTurn(std::vector<TurnMessage>{{Role::kUser, "U"}}, cut)->tokens[0],
            ByteTextCodec::kEnd);
}

TEST(MakeTextCodecTest, BytesIsKnownAndAMissingModelDirIsNotFound) {
  EXPECT_TRUE(MakeTextCodec("bytes").ok());
  EXPECT_EQ(MakeTextCodec("/no/such/model").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace hc::router
