#include "router/service/reply_stream.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace hc::router {
namespace {

namespace v1 = hybridcache::v1;

std::vector<uint32_t> Ids(std::string_view text) { return ByteTextCodec().EncodeBytes(text); }

v1::CommitReport Report(std::optional<std::pair<uint32_t, uint32_t>> cut = std::nullopt) {
  v1::CommitReport r;
  r.set_finish_reason("stop");
  if (cut.has_value()) {
    r.mutable_stop_string()->set_reply_bytes(cut->first);
    r.mutable_stop_string()->set_tokens_before(cut->second);
  }
  return r;
}

// Pushes `text` one token (byte) at a time; returns every chunk.
std::vector<ReplyStream::Chunk> PushEach(ReplyStream& s, std::string_view text) {
  std::vector<ReplyStream::Chunk> chunks;
  for (const uint32_t id : Ids(text)) chunks.push_back(s.Push(std::span(&id, 1), {}));
  return chunks;
}

std::string AllText(const std::vector<ReplyStream::Chunk>& chunks) {
  std::string text;
  for (const auto& c : chunks) text += c.text;
  return text;
}

TEST(ReplyStreamTest, WithoutStopStringsEverythingGoesOutAtOnce) {
  ByteTextCodec codec;
  ReplyStream s(&codec, {});
  const std::vector<uint32_t> ids = Ids("hello");
  const float lp[] = {-1, -2, -3, -4, -5};
  const ReplyStream::Chunk c = s.Push(ids, lp);
  EXPECT_EQ(c.text, "hello");
  EXPECT_EQ(c.token_ids, ids);
  EXPECT_EQ(c.logprobs, std::vector<float>(std::begin(lp), std::end(lp)));
  const auto rest = s.Finish(Report());
  ASSERT_TRUE(rest.ok());
  EXPECT_TRUE(rest->empty());
  EXPECT_EQ(s.reply_tokens(), ids);
}

TEST(ReplyStreamTest, APossibleStopStringIsHeldUntilItFails) {
  ByteTextCodec codec;
  const std::vector<std::string> stops = {"END"};
  ReplyStream s(&codec, stops);
  EXPECT_EQ(s.Push(Ids("ab"), {}).text, "ab");
  ReplyStream::Chunk held = s.Push(Ids("E"), {});
  EXPECT_TRUE(held.empty());
  EXPECT_TRUE(s.Push(Ids("N"), {}).empty());
  const ReplyStream::Chunk released = s.Push(Ids("x"), {});
  EXPECT_EQ(released.text, "ENx");
  EXPECT_EQ(released.token_ids, Ids("ENx"));
  // Held at the end of a turn without a stop string: released.
  EXPECT_TRUE(s.Push(Ids("EN"), {}).empty());
  const auto rest = s.Finish(Report());
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->text, "EN");
  EXPECT_EQ(s.reply_tokens(), Ids("abENxEN"));
}

TEST(ReplyStreamTest, AStopStringIsNeverStreamedAndTheReplyEndsBeforeIt) {
  ByteTextCodec codec;
  const std::vector<std::string> stops = {"END", "ENOUGH"};
  ReplyStream s(&codec, stops);
  std::vector<ReplyStream::Chunk> chunks = PushEach(s, "hello ENDtail");  // the worker stops at D
  // The worker: the stop string "END" begins at byte 6, in token 6.
  const auto rest = s.Finish(Report(std::make_pair(6u, 6u)));
  ASSERT_TRUE(rest.ok()) << rest.status();
  chunks.push_back(*rest);
  for (const auto& c : chunks) EXPECT_EQ(c.text.find('E'), std::string::npos) << c.text;
  EXPECT_EQ(AllText(chunks), "hello ");
  std::vector<uint32_t> ids;
  for (const auto& c : chunks) ids.insert(ids.end(), c.token_ids.begin(), c.token_ids.end());
  EXPECT_EQ(ids, Ids("hello "));
  EXPECT_EQ(s.reply_tokens(), Ids("hello "));
  EXPECT_EQ(s.num_generated(), 13u);
}

TEST(ReplyStreamTest, TopLogprobsTravelWithTheirTokensThroughHeldText) {
  ByteTextCodec codec;
  const std::vector<std::string> stops = {"END"};
  ReplyStream s(&codec, stops);
  // Each token's alternatives name the token itself first, then id 0.
  const auto push = [&](std::string_view text) {
    const std::vector<uint32_t> ids = Ids(text);
    std::vector<float> lp(ids.size(), -1.0f);
    google::protobuf::RepeatedPtrField<v1::TopLogprobs> top;
    for (const uint32_t id : ids) {
      v1::TopLogprobs* t = top.Add();
      t->add_token_ids(id);
      t->add_token_ids(0);
      t->add_logprobs(-1.0f);
      t->add_logprobs(-2.0f);
    }
    return s.Push(ids, lp, top);
  };
  std::vector<ReplyStream::Chunk> chunks = {push("aE"), push("Nb"), push("ENDx")};
  const auto rest = s.Finish(Report(std::make_pair(4u, 4u)));
  ASSERT_TRUE(rest.ok()) << rest.status();
  chunks.push_back(*rest);
  std::vector<uint32_t> ids, firsts;
  for (const auto& c : chunks) {
    ASSERT_EQ(c.top_logprobs.size(), c.token_ids.size()) << c.text;
    ids.insert(ids.end(), c.token_ids.begin(), c.token_ids.end());
    for (const v1::TopLogprobs& t : c.top_logprobs) firsts.push_back(t.token_ids(0));
  }
  EXPECT_EQ(ids, Ids("aENb"));
  EXPECT_EQ(firsts, ids);
}

TEST(ReplyStreamTest, MultibyteCharactersAreNeverSplitWhileHeld) {
  ByteTextCodec codec;
  const std::string check = "\xE2\x9C\x93";  // U+2713
  const std::vector<std::string> stops = {check + "!"};
  ReplyStream s(&codec, stops);
  std::vector<ReplyStream::Chunk> chunks = PushEach(s, "ok " + check + check + " x");
  const auto rest = s.Finish(Report());
  ASSERT_TRUE(rest.ok());
  chunks.push_back(*rest);
  for (const auto& c : chunks) EXPECT_TRUE(IsValidUtf8(c.text)) << c.text;
  EXPECT_EQ(AllText(chunks), "ok " + check + check + " x");
}

TEST(ReplyStreamTest, ACutThatDoesNotFitTheTokensIsAnInternalError) {
  ByteTextCodec codec;
  const std::vector<std::string> stops = {"zz"};
  ReplyStream s(&codec, stops);
  PushEach(s, "abc");  // all released: no 'z'
  EXPECT_EQ(s.Finish(Report(std::make_pair(9u, 9u))).status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(s.Finish(Report(std::make_pair(1u, 2u))).status().code(), absl::StatusCode::kInternal);
  // Before text already streamed.
  EXPECT_EQ(s.Finish(Report(std::make_pair(1u, 1u))).status().code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace hc::router
