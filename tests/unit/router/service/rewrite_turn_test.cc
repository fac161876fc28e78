// Rewrite turns through the router (router/service/rewrite.h): a chat
// template that renders the history differently once a conversation goes on
// (NVIDIA Nemotron-Nano-9B-v2's real template) continues on every turn, each
// turn's prompt being exactly the template's rendering of the conversation;
// a prefix-stable template still hits the cache; a failed or cancelled
// rewrite turn changes nothing.
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/text/bpe_trainer.h"
#include "common/text/chat_template.h"
#include "common/text/tokenizer.h"
#include "gtest/gtest.h"
#include "router/service/hf_text_codec.h"
#include "tests/unit/router/service/router_harness.h"

namespace hc::router {
namespace {

namespace v1 = hybridcache::v1;
using testing::HarnessOptions;
using testing::RouterHarness;
using testing::TurnResult;

std::string ReadTemplate(const std::string& file) {
  std::ifstream in(std::string(HC_CHAT_TEMPLATES_DIR) + "/" + file);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A checkpoint directory with a small trained tokenizer holding the
// template's special tokens, and the template as tokenizer_config.json ships
// it.
class RewriteTurnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/rewrite_turn_" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes the checkpoint's tokenizer files; returns the harness options for
  // a router with its codec and a fake worker ending replies with its
  // end-of-turn token.
  HarnessOptions Checkpoint(const std::string& tmpl, const std::vector<std::string>& specials,
                            const std::string& eos) {
    BpeTrainerOptions opt;
    opt.vocab_size = 400;
    opt.min_frequency = 1;
    opt.special_tokens = specials;
    const BpeModel model = TrainBpe(
        "System User Assistant <think> </think> Hello there, how are you today? "
        "Tell me more about the cache. And then? Thanks, bye.",
        opt);
    std::ofstream(dir_ + "/tokenizer.json") << BpeTokenizerJson(model);
    json::Value config = json::Value::MakeObject();
    config.Set("chat_template", json::Value::String(tmpl));
    config.Set("eos_token", json::Value::String(eos));
    std::ofstream(dir_ + "/tokenizer_config.json") << json::Serialize(config);
    tokenizer_ = Tokenizer::FromFile(dir_ + "/tokenizer.json").value();
    template_ = ChatTemplate::FromModelDir(dir_).value();
    auto codec = HfTextCodec::FromModelDir(dir_).value();
    HarnessOptions o;
    o.worker.vocab_size = codec->vocab_size();
    o.worker.eos = codec->eos_token_id();
    o.worker.emoji = false;  // the fake's emoji bytes are ByteTextCodec ids
    o.codec = std::move(codec);
    return o;
  }
  HarnessOptions Nemotron() {
    return Checkpoint(ReadTemplate("nemotron-nano-v2.jinja"),
                      {"<SPECIAL_10>", "<SPECIAL_11>", "<SPECIAL_12>"}, "<SPECIAL_12>");
  }

  // The token ids the template's rendering of the conversation `key` holds in
  // the ledger, followed by `next` user text, with the generation prompt:
  // what Hugging Face's apply_chat_template gives for that conversation.
  std::vector<uint32_t> Rendering(RouterHarness& h, const std::string& id,
                                  const std::string& next) {
    std::vector<ChatMessage> chat;
    if (auto rec = h.ledger().Get(LedgerKey{"", id}); rec.ok()) {
      for (const LedgerMessage& m : rec->messages) {
        chat.push_back({std::string(RoleName(m.role)), m.text});
      }
    }
    chat.push_back({"user", next});
    const RenderedChat r = template_->Render(chat, /*add_generation_prompt=*/true).value();
    const std::vector<TokenId> ids = EncodeRendered(*tokenizer_, r);
    return {ids.begin(), ids.end()};
  }

  static double Unlabelled(RouterHarness& h, const std::string& name) {
    for (const auto& family : h.registry().Collect()) {
      if (family.name == name && !family.metric.empty()) return family.metric[0].counter.value;
    }
    return -1;
  }

  std::string dir_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::optional<ChatTemplate> template_;
};

const std::vector<std::string> kTurns = {"Hello there", "how are you today?",
                                         "Tell me more about the cache.", "And then?",
                                         "Thanks, bye."};

TEST_F(RewriteTurnTest, NemotronConversationContinuesOnEveryTurnOnTheTemplatesRendering) {
  RouterHarness h(1, Nemotron());
  std::optional<uint32_t> prev_snapshot_at;
  std::vector<uint32_t> generation_prompt;
  for (size_t i = 0; i < kTurns.size(); ++i) {
    SCOPED_TRACE("turn " + std::to_string(i));
    const std::vector<uint32_t> expected = Rendering(h, "c", kTurns[i]);
    const TurnResult t = h.Complete(RouterHarness::UserTurn("c", kTurns[i]));
    ASSERT_TRUE(t.status.ok()) << t.status.error_message();
    ASSERT_NE(t.completed(), nullptr);
    EXPECT_EQ(t.completed()->committed_round(), i + 1);
    // The prompt the worker computed is the template's full rendering...
    const v1::ExecuteRequest req = h.worker(0).requests().back();
    std::vector<uint32_t> prompt(req.history_token_ids().begin(), req.history_token_ids().end());
    prompt.insert(prompt.end(), req.suffix_token_ids().begin(), req.suffix_token_ids().end());
    EXPECT_EQ(prompt, expected);
    EXPECT_EQ(t.completed()->usage().prompt_tokens(), expected.size());
    // ...sent as a first turn (no expected state: the worker's committed
    // state is at a length the rendering no longer extends). This fake
    // worker keeps no snapshots, so it reuses nothing.
    EXPECT_FALSE(req.has_expected());
    EXPECT_EQ(t.completed()->usage().cached_tokens(), 0u);
    // The template rewrites history, so every turn asks for a Mamba snapshot
    // at its last message's end, just before the generation prompt: exactly
    // where the next turn's kept prefix (its history) ends.
    ASSERT_TRUE(req.has_snapshot_at());
    ASSERT_LT(req.snapshot_at(), prompt.size());
    const std::vector<uint32_t> tail(prompt.begin() + req.snapshot_at(), prompt.end());
    if (i == 0) generation_prompt = tail;
    EXPECT_EQ(tail, generation_prompt);
    if (prev_snapshot_at.has_value()) {
      EXPECT_EQ(static_cast<uint32_t>(req.history_token_ids_size()), *prev_snapshot_at);
    }
    prev_snapshot_at = req.snapshot_at();
    // The ledger holds that prompt and the reply, and every message.
    const auto rec = h.ledger().Get(LedgerKey{"", "c"});
    ASSERT_TRUE(rec.ok()) << rec.status();
    ASSERT_GE(rec->tokens.size(), expected.size());
    EXPECT_EQ(std::vector<uint32_t>(rec->tokens.begin(), rec->tokens.begin() + expected.size()),
              expected);
    EXPECT_EQ(rec->tokens.size(), expected.size() + t.tokens.size());
    ASSERT_EQ(rec->messages.size(), 2 * (i + 1));
    for (size_t m = 0; m <= i; ++m) {
      EXPECT_EQ(rec->messages[2 * m].text, kTurns[m]);
      EXPECT_EQ(rec->messages[2 * m + 1].role, Role::kAssistant);
    }
    EXPECT_EQ(rec->messages.back().text, t.text);
  }
  EXPECT_EQ(Unlabelled(h, "hc_router_rewrite_turns_total"), kTurns.size() - 1);
  EXPECT_GT(Unlabelled(h, "hc_router_rewrite_kept_tokens_total"), 0);
}

TEST_F(RewriteTurnTest, PrefixStableTemplateStillHitsTheCacheEveryTurn) {
  RouterHarness h(1, Checkpoint(ReadTemplate("builtin-chatml.jinja"),
                                {"<|im_start|>", "<|im_end|>"}, "<|im_end|>"));
  for (size_t i = 0; i < kTurns.size(); ++i) {
    SCOPED_TRACE("turn " + std::to_string(i));
    const std::vector<uint32_t> expected = Rendering(h, "c", kTurns[i]);
    const TurnResult t = h.Complete(RouterHarness::UserTurn("c", kTurns[i]));
    ASSERT_TRUE(t.status.ok()) << t.status.error_message();
    EXPECT_EQ(t.completed()->usage().prompt_tokens(), expected.size());
    // No snapshot is asked for: the committed state serves every turn.
    EXPECT_FALSE(h.worker(0).requests().back().has_snapshot_at());
    if (i > 0) {
      EXPECT_TRUE(h.worker(0).requests().back().has_expected());
      EXPECT_GT(t.completed()->usage().cached_tokens(), 0u);
    }
  }
  EXPECT_EQ(Unlabelled(h, "hc_router_rewrite_turns_total"), 0);
  EXPECT_EQ(h.Counter("hc_router_routing_decisions_total", "decision", "sticky"),
            kTurns.size() - 1);
}

TEST_F(RewriteTurnTest, AFailedRewriteTurnLeavesTheLedgerUnchanged) {
  RouterHarness h(1, Nemotron());
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("c", kTurns[0])).status.ok());
  const auto before = h.ledger().Get(LedgerKey{"", "c"});
  ASSERT_TRUE(before.ok());
  h.worker(0).FailNext(grpc::StatusCode::INTERNAL, 1);
  const TurnResult failed = h.Complete(RouterHarness::UserTurn("c", kTurns[1]));
  EXPECT_EQ(failed.status.error_code(), grpc::StatusCode::INTERNAL);
  const auto after = h.ledger().Get(LedgerKey{"", "c"});
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->round, before->round);
  EXPECT_EQ(after->tokens, before->tokens);
  EXPECT_EQ(after->messages, before->messages);
  EXPECT_EQ(after->worker, before->worker);
  // The lease came back: the same turn goes through now.
  EXPECT_TRUE(h.Complete(RouterHarness::UserTurn("c", kTurns[1])).status.ok());
}

TEST_F(RewriteTurnTest, ACancelledRewriteTurnLeavesTheLedgerUnchanged) {
  RouterHarness h(1, Nemotron());
  ASSERT_TRUE(h.Complete(RouterHarness::UserTurn("c", kTurns[0])).status.ok());
  const auto before = h.ledger().Get(LedgerKey{"", "c"});
  ASSERT_TRUE(before.ok());
  h.worker(0).BlockNext(/*tokens_before=*/1);
  grpc::ClientContext ctx;
  auto reader = h.stub().Complete(&ctx, RouterHarness::UserTurn("c", kTurns[1]));
  ASSERT_TRUE(h.worker(0).entered().WaitForNotificationWithTimeout(absl::Seconds(30)));
  ctx.TryCancel();
  v1::CompleteEvent e;
  while (reader->Read(&e)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The cancelled turn releases its lease after the client's status; the
  // next turn waits for that (ABORTED until then).
  TurnResult next;
  for (int i = 0; i < 1000; ++i) {
    const auto now = h.ledger().Get(LedgerKey{"", "c"});
    ASSERT_TRUE(now.ok());
    EXPECT_EQ(now->round, before->round);
    EXPECT_EQ(now->tokens, before->tokens);
    EXPECT_EQ(now->messages, before->messages);
    next = h.Complete(RouterHarness::UserTurn("c", kTurns[1]));
    if (next.status.error_code() != grpc::StatusCode::ABORTED) break;
  }
  EXPECT_TRUE(next.status.ok()) << next.status.error_message();
}

}  // namespace
}  // namespace hc::router
