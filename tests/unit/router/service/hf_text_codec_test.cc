#include "router/service/hf_text_codec.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "common/model_path.h"
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
    opt.special_tokens = {"<|end_of_text|>", "<|pad|>",      "<|start_of_role|>",
                          "<|end_of_role|>", "<|im_start|>", "<|im_end|>"};
    const BpeModel model = TrainBpe(
        "Hello there, how are you today? The cache holds the state of each conversation. "
        "Emoji: \xF0\x9F\x98\x80 caf\xC3\xA9 na\xC3\xAFve. user assistant system",
        opt);
    tokenizer_json_ = BpeTokenizerJson(model);
    codec_ = Codec("builtin", ChatTemplate::ByName("granite")->source(), "<|end_of_text|>");
    tokenizer_ = Tokenizer::FromFile(dir_ + "/builtin/tokenizer.json").value();
  }

  // A checkpoint directory `name` with this test's tokenizer and `tmpl`.
  std::unique_ptr<HfTextCodec> Codec(const std::string& name, const std::string& tmpl,
                                     const std::string& eos) {
    const std::string dir = dir_ + "/" + name;
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/tokenizer.json") << tokenizer_json_;
    json::Value config = json::Value::MakeObject();
    config.Set("chat_template", json::Value::String(tmpl));
    config.Set("eos_token", json::Value::String(eos));
    std::ofstream(dir + "/tokenizer_config.json") << json::Serialize(config);
    return HfTextCodec::FromModelDir(dir).value();
  }

  static std::string ReadTemplate(const std::string& file) {
    std::ifstream in(std::string(HC_CHAT_TEMPLATES_DIR) + "/" + file);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<uint32_t> Ids(const std::vector<TokenId>& v) { return {v.begin(), v.end()}; }

  std::string dir_;
  std::string tokenizer_json_;
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

// Encodes a conversation turn by turn, as the router does: each turn's new
// messages, then the model's reply (its tokens and the end-of-turn token);
// the script ends with the last turn's messages, whose prompt ends the ids.
// Checks that the new messages' ranges tile their part of each turn.
std::vector<uint32_t> TurnByTurn(const HfTextCodec& codec, const Tokenizer& tok,
                                 const std::vector<TurnMessage>& script) {
  std::vector<uint32_t> ids;
  std::vector<TurnMessage> history;
  std::vector<TurnMessage> pending;
  auto encode_turn = [&]() {
    TurnContext ctx{.first_turn = ids.empty(), .history = history};
    if (!ids.empty()) ctx.last_token = ids.back();
    const absl::StatusOr<EncodedTurn> t = codec.EncodeTurn(pending, ctx);
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return;
    EXPECT_EQ(t->message_begins.size(), pending.size());
    for (size_t i = 0; i < pending.size(); ++i) {
      EXPECT_LT(t->message_begins[i], t->message_ends[i]);
      if (i > 0) {
        EXPECT_EQ(t->message_begins[i], t->message_ends[i - 1]);
      }
    }
    ids.insert(ids.end(), t->tokens.begin(), t->tokens.end());
    history.insert(history.end(), pending.begin(), pending.end());
    pending.clear();
  };
  for (const TurnMessage& m : script) {
    if (m.role != Role::kAssistant) {
      pending.push_back(m);
      continue;
    }
    encode_turn();
    for (const TokenId id : tok.Encode(m.content, false)) ids.push_back(static_cast<uint32_t>(id));
    ids.push_back(codec.eos_token_id());
    history.push_back(m);
  }
  encode_turn();
  return ids;
}

const std::vector<TurnMessage> kScript = {{Role::kSystem, "Be brief."},
                                          {Role::kUser, "Hello there"},
                                          {Role::kAssistant, "how are you today?"},
                                          {Role::kUser, "caf\xC3\xA9 \xF0\x9F\x98\x80"},
                                          {Role::kAssistant, "The cache holds the state."},
                                          {Role::kUser, "<|end_of_text|> user"}};

std::vector<ChatMessage> AsChat(const std::vector<TurnMessage>& script) {
  std::vector<ChatMessage> out;
  for (const TurnMessage& m : script) out.push_back({std::string(RoleName(m.role)), m.content});
  return out;
}

TEST_F(HfTextCodecTest, TurnByTurnEncodingEqualsEncodingTheWholeConversation) {
  const ChatTemplate tmpl = ChatTemplate::ByName("granite").value();
  EXPECT_EQ(TurnByTurn(*codec_, *tokenizer_, kScript),
            Ids(EncodeChat(*tokenizer_, tmpl, AsChat(kScript), true).value()));
}

TEST_F(HfTextCodecTest, ContinuingRendersTheHistoryWithARealTemplate) {
  // Granite-4.0's template writes a default system prompt before the first
  // message; continuing a conversation must not repeat or drop it.
  const std::string source = ReadTemplate("granite-4.0-h.jinja");
  const auto codec = Codec("granite4", source, "<|end_of_text|>");
  const std::vector<TurnMessage> script(kScript.begin() + 1, kScript.end());  // no system message
  const std::vector<uint32_t> conversation = TurnByTurn(*codec, *tokenizer_, script);
  const ChatTemplate tmpl =
      ChatTemplate::FromTokenizerConfig(R"({"eos_token": "<|end_of_text|>"})", &source).value();
  const RenderedChat whole = tmpl.Render(AsChat(script), true).value();
  EXPECT_NE(whole.text.find("You are a helpful assistant."), std::string::npos);
  EXPECT_EQ(conversation, Ids(EncodeRendered(*tokenizer_, whole)));
  // The content's "<|end_of_text|>" stayed text: the only end-of-turn tokens
  // are the template's (system, 3 user, 2 assistant).
  size_t eots = 0;
  for (const uint32_t id : conversation) eots += id == codec->eos_token_id() ? 1 : 0;
  EXPECT_EQ(eots, 6u);
}

TEST_F(HfTextCodecTest, TemplateThatRewritesHistoryGivesTheWholeRenderingAsARewrite) {
  // Like Qwen3's and Nemotron's templates: earlier replies lose their
  // reasoning once the conversation continues, so the cached tokens (which
  // hold it) are not what the template renders. The turn is then encoded as
  // the whole rendering, every message delimited, for the router to keep
  // what the committed tokens share (router/service/rewrite.h).
  const std::string source =
      "{% for m in messages %}<|im_start|>{{ m.role }}\n"
      "{% if m.role == 'assistant' %}{{ m.content.split('</think>')[-1] }}"
      "{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
  const auto codec = Codec("rewrites", source, "<|im_end|>");
  const std::vector<TurnMessage> history = {{Role::kUser, "Hello"},
                                            {Role::kAssistant, "<think>hmm</think>Hi"}};
  const TurnContext ctx{
      .first_turn = false, .last_token = codec->eos_token_id(), .history = history};
  const absl::StatusOr<EncodedTurn> t = codec->EncodeTurn({{{Role::kUser, "More"}}}, ctx);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->rewrite);
  const ChatTemplate tmpl =
      ChatTemplate::FromTokenizerConfig(R"({"eos_token": "<|im_end|>"})", &source).value();
  std::vector<TurnMessage> all = history;
  all.push_back({Role::kUser, "More"});
  const RenderedChat whole = tmpl.Render(AsChat(all), true).value();
  EXPECT_EQ(t->tokens, Ids(EncodeRendered(*tokenizer_, whole)));
  // One range per message, history first, in order and inside the tokens.
  ASSERT_EQ(t->message_begins.size(), 3u);
  ASSERT_EQ(t->message_ends.size(), 3u);
  EXPECT_EQ(t->message_begins[0], 0u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_LE(t->message_begins[i], t->message_ends[i]);
    if (i > 0) {
      EXPECT_EQ(t->message_begins[i], t->message_ends[i - 1]);
    }
  }
  EXPECT_LT(t->message_ends[2], t->tokens.size());  // the generation prompt follows
  // Without reasoning in the reply the same template continues the cached
  // tokens as usual.
  const std::vector<TurnMessage> plain = {{Role::kUser, "Hello"}, {Role::kAssistant, "Hi"}};
  const absl::StatusOr<EncodedTurn> cont = codec->EncodeTurn(
      {{{Role::kUser, "More"}}},
      {.first_turn = false, .last_token = codec->eos_token_id(), .history = plain});
  ASSERT_TRUE(cont.ok()) << cont.status();
  EXPECT_FALSE(cont->rewrite);
  EXPECT_EQ(cont->message_begins.size(), 1u);
}

TEST_F(HfTextCodecTest, RewriteTurnEncodesAsTheWholeRenderingWhenRenderingsAgreeMidWord) {
  // Qwen3's template renders an assistant message after the last user query
  // with its reasoning while it is the last message, and without it once
  // another follows. The rendering up to that message then agrees with the
  // whole one only to "<t" ("<think>" / "<tool_call>"); encoding the turn in
  // pieces cut there gave "<t" + "ool_call>" where the whole text has
  // "<tool_call>" (found by tests/integration/test_qwen3_stack.py).
  const std::string dir = dir_ + "/qwen3_synthetic";
  ASSERT_TRUE(WriteSyntheticTokenizerFiles("bamba-qwen3-tiny", dir).ok());
  const std::unique_ptr<HfTextCodec> codec = HfTextCodec::FromModelDir(dir).value();
  const std::unique_ptr<Tokenizer> tokenizer = Tokenizer::FromFile(dir + "/tokenizer.json").value();
  const std::vector<TurnMessage> history = {
      {Role::kUser, "What is the weather in Paris?"},
      {Role::kAssistant, "The village"},
      {Role::kAssistant,
       "<think>\nI should call the tool.\n</think>\n\n<tool_call>\n{\"name\": \"weather\"}\n"
       "</tool_call>"},
      {Role::kTool, "{\"celsius\": 21}"}};
  const absl::StatusOr<EncodedTurn> t = codec->EncodeTurn(
      {{{Role::kUser, "Thanks!"}}}, {.first_turn = false, .last_token = 7, .history = history});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->rewrite);
  const ChatTemplate tmpl = ChatTemplate::FromModelDir(dir).value();
  std::vector<TurnMessage> all = history;
  all.push_back({Role::kUser, "Thanks!"});
  const RenderedChat whole = tmpl.Render(AsChat(all), true).value();
  EXPECT_EQ(t->tokens, Ids(EncodeRendered(*tokenizer, whole)));
  ASSERT_EQ(t->message_begins.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_LE(t->message_begins[i], t->message_ends[i]) << i;
    if (i > 0) {
      EXPECT_EQ(t->message_begins[i], t->message_ends[i - 1]) << i;
    }
  }
  EXPECT_LT(t->message_ends[4], t->tokens.size());  // the generation prompt follows
}

TEST_F(HfTextCodecTest, ProbeFindsTheTemplatesThatRewriteHistory) {
  // The router asks workers for Mamba snapshots only for these
  // (TextCodec::RewritesHistory): Nemotron-Nano-v2 ("<think>" in the
  // generation prompt only) and Qwen3 (earlier replies lose their reasoning).
  struct Case {
    const char* file;
    const char* eos;
    bool rewrites;
  };
  for (const Case& c :
       {Case{"nemotron-nano-v2.jinja", "<|im_end|>", true}, Case{"qwen3.jinja", "<|im_end|>", true},
        Case{"granite-4.0-h.jinja", "<|end_of_text|>", false},
        Case{"builtin-chatml.jinja", "<|im_end|>", false}}) {
    const auto codec = Codec(c.file, ReadTemplate(c.file), c.eos);
    EXPECT_EQ(codec->RewritesHistory(), c.rewrites) << c.file;
  }
  EXPECT_FALSE(codec_->RewritesHistory());  // the built-in granite template
}

TEST_F(HfTextCodecTest, TemplateRefusalIsInvalidArgumentWithItsMessage) {
  const auto codec =
      Codec("strict",
            "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the "
            "user') }}{% endif %}{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% "
            "endfor %}",
            "<|im_end|>");
  const absl::StatusOr<EncodedTurn> t = codec->EncodeTurn({{{Role::kSystem, "S"}}}, {});
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t.status().message(), "first message must be from the user");
}

TEST_F(HfTextCodecTest, ReplyCutShortIsClosedBeforeTheNextMessage) {
  const std::vector<TurnMessage> history = {{Role::kUser, "Hello"}, {Role::kAssistant, "how"}};
  const EncodedTurn t =
      codec_
          ->EncodeTurn({{{Role::kUser, "Hello"}}},
                       {.first_turn = false, .last_token = 42, .history = history})
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
  EXPECT_TRUE(std::filesystem::exists(absl::StrCat(
      cache, "/synthetic-tiny-v", kSyntheticFormatVersion, "-tokenizer/tokenizer.json")));
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
