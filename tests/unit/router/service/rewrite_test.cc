// ApplyRewrite: what a rewrite turn keeps of the committed conversation and
// what it computes and commits again.
#include "router/service/rewrite.h"

#include <vector>

#include "gtest/gtest.h"

namespace hc::router {
namespace {

// A committed conversation: [0,1) preamble, user [1,4), prompt [4,6),
// assistant reply [6,9).
ConversationRecord Committed() {
  ConversationRecord rec;
  rec.round = 1;
  rec.tokens = {100, 1, 2, 3, 50, 51, 7, 8, 9};
  rec.messages = {LedgerMessage{Role::kUser, 1, 4, "u1"},
                  LedgerMessage{Role::kAssistant, 6, 9, "a1"}};
  rec.worker = WorkerState{"w", 1, 8, 77};
  return rec;
}

TEST(RewriteTest, KeepsTheSharedPrefixBackToTheLastMessageBoundary) {
  ConversationRecord rec = Committed();
  std::vector<TurnMessage> messages = {{Role::kUser, "u2"}};
  // The template re-renders the reply (its prompt differs from token 5 on).
  EncodedTurn enc;
  enc.rewrite = true;
  enc.tokens = {100, 1, 2, 3, 50, 7, 8, 9, 60, 4, 5, 50, 51};
  enc.message_begins = {0, 4, 8};
  enc.message_ends = {4, 8, 11};
  const uint32_t kept = ApplyRewrite(rec, messages, enc).value();
  // Shared: 5 tokens; the last committed boundary by then is the user
  // message's end, 4.
  EXPECT_EQ(kept, 4u);
  EXPECT_EQ(rec.tokens, (std::vector<uint32_t>{100, 1, 2, 3}));
  EXPECT_EQ(rec.messages, (std::vector<LedgerMessage>{{Role::kUser, 1, 4, "u1"}}));
  EXPECT_EQ(rec.round, 1u);
  EXPECT_FALSE(enc.rewrite);
  EXPECT_EQ(enc.tokens, (std::vector<uint32_t>{50, 7, 8, 9, 60, 4, 5, 50, 51}));
  // The reply is committed again (its text as the ledger has it), then the
  // new message, with ranges relative to the suffix.
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].role, Role::kAssistant);
  EXPECT_EQ(messages[0].content, "a1");
  EXPECT_EQ(messages[1].content, "u2");
  EXPECT_EQ(enc.message_begins, (std::vector<uint32_t>{0, 4}));
  EXPECT_EQ(enc.message_ends, (std::vector<uint32_t>{4, 7}));
}

TEST(RewriteTest, NothingSharedKeepsNothing) {
  ConversationRecord rec = Committed();
  std::vector<TurnMessage> messages = {{Role::kUser, "u2"}};
  EncodedTurn enc;
  enc.rewrite = true;
  enc.tokens = {101, 1, 2, 3, 7, 8, 9, 4, 5};
  enc.message_begins = {0, 4, 7};
  enc.message_ends = {4, 7, 9};
  EXPECT_EQ(ApplyRewrite(rec, messages, enc).value(), 0u);
  EXPECT_TRUE(rec.tokens.empty());
  EXPECT_TRUE(rec.messages.empty());
  EXPECT_EQ(enc.tokens.size(), 9u);
  EXPECT_EQ(messages.size(), 3u);
  EXPECT_EQ(enc.message_begins, (std::vector<uint32_t>{0, 4, 7}));
}

TEST(RewriteTest, AMessageBeginIsABoundaryTooAndOneTokenIsAlwaysLeftToCompute) {
  ConversationRecord rec = Committed();
  std::vector<TurnMessage> messages = {{Role::kUser, "u2"}};
  // Shares the first 7 tokens: the reply's begin (6) is the last boundary.
  EncodedTurn enc;
  enc.rewrite = true;
  enc.tokens = {100, 1, 2, 3, 50, 51, 7, 99, 4};
  enc.message_begins = {0, 4, 8};
  enc.message_ends = {4, 8, 9};
  EXPECT_EQ(ApplyRewrite(rec, messages, enc).value(), 6u);
  EXPECT_EQ(rec.messages.size(), 1u);
  EXPECT_EQ(enc.tokens, (std::vector<uint32_t>{7, 99, 4}));
  // The reply re-committed from the boundary on (its range clamped to it).
  EXPECT_EQ(enc.message_begins, (std::vector<uint32_t>{0, 2}));
  EXPECT_EQ(enc.message_ends, (std::vector<uint32_t>{2, 3}));

  // A rendering that is a prefix of the committed tokens still leaves its
  // last token to compute (a worker needs at least one).
  ConversationRecord again = Committed();
  std::vector<TurnMessage> more = {{Role::kUser, "u2"}};
  EncodedTurn prefix;
  prefix.rewrite = true;
  prefix.tokens = {100, 1, 2, 3};
  prefix.message_begins = {0, 4, 4};
  prefix.message_ends = {4, 4, 4};
  EXPECT_EQ(ApplyRewrite(again, more, prefix).value(), 1u);
  EXPECT_EQ(prefix.tokens, (std::vector<uint32_t>{1, 2, 3}));
}

TEST(RewriteTest, AnEncodingWithoutARangePerMessageIsInternalAndChangesNothing) {
  ConversationRecord rec = Committed();
  std::vector<TurnMessage> messages = {{Role::kUser, "u2"}};
  EncodedTurn enc;
  enc.rewrite = true;
  enc.tokens = {100, 1, 2, 3, 4};
  enc.message_begins = {4};  // only the new message's
  enc.message_ends = {5};
  const absl::StatusOr<uint32_t> kept = ApplyRewrite(rec, messages, enc);
  EXPECT_EQ(kept.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(rec.tokens, Committed().tokens);
  EXPECT_EQ(rec.messages, Committed().messages);
  EXPECT_EQ(messages.size(), 1u);
  EXPECT_EQ(enc.tokens.size(), 5u);
}

}  // namespace
}  // namespace hc::router
