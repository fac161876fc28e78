#include "router/service/turn_requests.h"

#include <deque>

#include "gtest/gtest.h"

namespace hc::router {
namespace {

namespace v1 = hybridcache::v1;

v1::CompleteEvent Chunk(std::vector<uint32_t> ids, std::string text, bool logprobs) {
  v1::CompleteEvent e;
  for (uint32_t id : ids) {
    e.mutable_chunk()->add_token_ids(id);
    if (logprobs) {
      e.mutable_chunk()->add_logprobs(-static_cast<float>(id));
      e.mutable_chunk()->add_top_logprobs()->add_token_ids(id);
    }
  }
  e.mutable_chunk()->set_text(std::move(text));
  return e;
}

TEST(PopNextWriteTest, ConcatenatesChunksQueuedBehindEachOtherInOrder) {
  std::deque<v1::CompleteEvent> q;
  q.push_back(Chunk({1}, "a", true));
  q.push_back(Chunk({2, 3}, "bc", true));
  q.push_back(Chunk({}, "\xC3\xA9", true));  // a text-only flush
  v1::CompleteEvent merged = PopNextWrite(q);
  EXPECT_TRUE(q.empty());
  ASSERT_TRUE(merged.has_chunk());
  EXPECT_EQ(
      std::vector<uint32_t>(merged.chunk().token_ids().begin(), merged.chunk().token_ids().end()),
      (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(std::vector<float>(merged.chunk().logprobs().begin(), merged.chunk().logprobs().end()),
            (std::vector<float>{-1, -2, -3}));
  ASSERT_EQ(merged.chunk().top_logprobs_size(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(merged.chunk().top_logprobs(i).token_ids(0), i + 1u);
  EXPECT_EQ(merged.chunk().text(), "abc\xC3\xA9");
}

TEST(PopNextWriteTest, NeverMergesAcrossANonChunkEvent) {
  std::deque<v1::CompleteEvent> q;
  v1::CompleteEvent started;
  started.mutable_started()->set_round(4);
  v1::CompleteEvent completed;
  completed.mutable_completed()->set_finish_reason("stop");
  q.push_back(started);
  q.push_back(Chunk({1}, "a", false));
  q.push_back(Chunk({2}, "b", false));
  q.push_back(completed);
  q.push_back(Chunk({9}, "z", false));

  EXPECT_TRUE(PopNextWrite(q).has_started());
  v1::CompleteEvent chunk = PopNextWrite(q);
  EXPECT_EQ(chunk.chunk().text(), "ab");
  EXPECT_EQ(chunk.chunk().logprobs_size(), 0);
  EXPECT_TRUE(PopNextWrite(q).has_completed());
  EXPECT_EQ(PopNextWrite(q).chunk().text(), "z");
  EXPECT_TRUE(q.empty());
}

}  // namespace
}  // namespace hc::router
