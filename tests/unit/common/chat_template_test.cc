#include "common/chat_template.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hc {
namespace {

using ::testing::HasSubstr;

const std::vector<ChatMessage> kConversation = {
    {"system", "You are terse."}, {"user", "Hi!"}, {"assistant", "Hello."},
    {"user", "What is 2+2?"},     {"assistant", "4"}, {"user", "Thanks \xF0\x9F\x99\x82"}};

TEST(ChatTemplateTest, GraniteRendersRolesAndGenerationPrompt) {
  const ChatTemplate t(ChatTemplate::Kind::kGranite);
  EXPECT_EQ(t.Render({{"user", "Hi"}}, true),
            "<|start_of_role|>user<|end_of_role|>Hi<|end_of_text|>\n"
            "<|start_of_role|>assistant<|end_of_role|>");
  EXPECT_EQ(t.end_of_turn(), "<|end_of_text|>");
}

TEST(ChatTemplateTest, ChatMlRendersRolesAndGenerationPrompt) {
  const ChatTemplate t(ChatTemplate::Kind::kChatMl);
  EXPECT_EQ(t.Render({{"system", "S"}, {"user", "U"}}, true),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(t.end_of_turn(), "<|im_end|>");
}

TEST(ChatTemplateTest, RenderingSuffixesConcatenatesToFullRendering) {
  for (auto kind : {ChatTemplate::Kind::kGranite, ChatTemplate::Kind::kChatMl}) {
    const ChatTemplate t(kind);
    const std::string full = t.Render(kConversation, /*add_generation_prompt=*/true);
    // Every split point: prefix (no prompt) + suffix (with prompt) == full.
    for (size_t split = 0; split <= kConversation.size(); ++split) {
      absl::Span<const ChatMessage> all(kConversation);
      EXPECT_EQ(t.Render(all.subspan(0, split), false) + t.Render(all.subspan(split), true), full)
          << "split at " << split;
    }
    std::string one_by_one;
    for (const ChatMessage& m : kConversation) one_by_one += t.RenderMessage(m);
    EXPECT_EQ(one_by_one + std::string(t.generation_prompt()), full);
  }
}

TEST(ChatTemplateTest, GeneratedTurnPlusSeparatorContinuesTheRendering) {
  // The model's sampled assistant text ends with end_of_turn(); adding
  // after_end_of_turn() gives exactly the rendered assistant message.
  const ChatTemplate t(ChatTemplate::Kind::kGranite);
  const std::string generated = std::string(t.generation_prompt()) + "Hello." +
                                std::string(t.end_of_turn()) + std::string(t.after_end_of_turn());
  EXPECT_EQ(generated, t.RenderMessage({"assistant", "Hello."}));
}

TEST(ChatTemplateTest, DetectsFamilyFromTokenizerConfig) {
  auto granite = ChatTemplate::FromTokenizerConfig(
      R"({"chat_template": "{{ '<|start_of_role|>' + m['role'] }}", "eos_token": "<|end_of_text|>"})");
  ASSERT_TRUE(granite.ok()) << granite.status();
  EXPECT_EQ(granite->kind(), ChatTemplate::Kind::kGranite);
  auto chatml = ChatTemplate::FromTokenizerConfig(
      R"({"chat_template": [{"name": "default", "template": "<|im_start|>{{role}}"}]})");
  ASSERT_TRUE(chatml.ok()) << chatml.status();
  EXPECT_EQ(chatml->kind(), ChatTemplate::Kind::kChatMl);
  auto by_tokens = ChatTemplate::FromTokenizerConfig(
      R"({"added_tokens_decoder": {"5": {"content": "<|im_start|>"}}})");
  ASSERT_TRUE(by_tokens.ok());
  EXPECT_EQ(by_tokens->kind(), ChatTemplate::Kind::kChatMl);
  auto unknown = ChatTemplate::FromTokenizerConfig(R"({"chat_template": "[INST] {{x}} [/INST]"})");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kUnimplemented);
}

TEST(ChatTemplateTest, ByNameAcceptsKnownNamesOnly) {
  EXPECT_EQ(ChatTemplate::ByName("granite")->kind(), ChatTemplate::Kind::kGranite);
  EXPECT_EQ(ChatTemplate::ByName("chatml")->kind(), ChatTemplate::Kind::kChatMl);
  auto bad = ChatTemplate::ByName("llama");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("llama"));
}

TEST(ChatTemplateTest, JinjaSourceUsesTheSameMarkers) {
  for (auto kind : {ChatTemplate::Kind::kGranite, ChatTemplate::Kind::kChatMl}) {
    const ChatTemplate t(kind);
    auto detected = ChatTemplate::FromTokenizerConfig(
        "{\"chat_template\": \"" + t.JinjaSource() + "\"}");
    ASSERT_TRUE(detected.ok()) << detected.status();
    EXPECT_EQ(detected->kind(), kind);
  }
}

}  // namespace
}  // namespace hc
