// How the engine's step schedules turns under memory pressure: which turns a
// step forwards when the cache cannot grow every running turn.
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/unit/worker/engine/engine_harness.h"
#include "worker/engine/engine.h"

namespace hc::engine {
namespace {

using testing::Greedy;
using testing::Harness;
using testing::HarnessOptions;
using testing::RandomTokens;
using testing::Recorder;

// Two fresh turns of `prompt_len` tokens, started together on `h`, whose
// prompts begin with tokens 10 and 11 (so the model's calls tell them apart).
std::vector<TurnSpec> TwoLongTurns(int prompt_len, int max_tokens) {
  std::mt19937 rng(5);
  std::vector<TurnSpec> turns;
  for (int i = 0; i < 2; ++i) {
    TurnSpec t;
    t.key = {"", absl::StrCat("long", i)};
    t.request_id = t.key.conversation_id;
    t.suffix = RandomTokens(rng, prompt_len);
    t.suffix[0] = 10 + i;
    t.sampling = Greedy(max_tokens);
    turns.push_back(std::move(t));
  }
  return turns;
}

TEST(EngineScheduleTest, APreemptedTurnIsNotForwardedInTheStepThatPreemptedIt) {
  // Each turn needs (40 + 12) / 4 = 13 blocks; 20 blocks cannot hold both,
  // so growing the older turn preempts the newer one while both run.
  Harness h({.kv_blocks = 20, .mamba_slots = 4, .block_size = 4, .max_batch_tokens = 8});
  Harness ref({.kv_blocks = 512, .mamba_slots = 8, .block_size = 4, .max_batch_tokens = 8});
  const std::vector<TurnSpec> turns = TwoLongTurns(40, 12);
  // Both are queued before the second step: the first step's forward holds
  // the engine thread until the second turn is submitted.
  h.gate().BlockAt(1);
  std::vector<std::shared_ptr<Recorder>> recs;
  recs.push_back(h.Start(turns[0]));
  h.gate().AwaitBlocked();
  recs.push_back(h.Start(turns[1]));
  h.gate().Release();
  for (int i = 0; i < 2; ++i) {
    recs[i]->done.WaitForNotification();
    ASSERT_TRUE(recs[i]->result.has_value()) << recs[i]->failed;
    EXPECT_EQ(recs[i]->tokens, ref.Run(turns[i])->tokens) << "turn " << i;
  }
  ASSERT_TRUE(h.engine().AwaitIdle(absl::Seconds(10)));

  // Replay the model's calls. A sequence at position 0 (re)starts the turn
  // its first token names, in its Mamba slot; a turn started twice was
  // preempted in between. The step that preempted it ran the other turn
  // without it, so the call just before its restart must not hold it.
  std::map<int32_t, int32_t> turn_in_slot;
  std::set<int32_t> started, previous_call;
  int restarts = 0;
  const auto& calls = h.model().calls();
  for (size_t i = 0; i < calls.size(); ++i) {
    std::set<int32_t> in_call;
    for (const auto& seq : calls[i]) {
      if (seq.num_computed_tokens == 0) {
        turn_in_slot[seq.mamba_slot] = seq.first_token;
        if (!started.insert(seq.first_token).second) {
          ++restarts;
          EXPECT_FALSE(previous_call.contains(seq.first_token))
              << "turn " << seq.first_token << " restarted in call " << i
              << " right after running in call " << i - 1;
        }
      }
      in_call.insert(turn_in_slot.at(seq.mamba_slot));
    }
    previous_call = std::move(in_call);
  }
  EXPECT_GT(restarts, 0) << "the scenario must preempt";
}

}  // namespace
}  // namespace hc::engine
