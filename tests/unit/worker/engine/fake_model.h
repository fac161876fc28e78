// A deterministic stand-in for the hybrid model that really uses the cache
// memory the way the model does, so engine tests catch wrong block tables,
// tail copies and state slots:
//   - each new token is written into its KV row (layer 0, rank 0, element 0),
//   - the Mamba slot carries a running hash of every token seen,
//   - the logits single out one token, a function of all KV rows 0..p read
//     back through the block table and of the Mamba state.
// Any attach that hands the model wrong memory changes the sampled tokens.
#ifndef HC_TESTS_UNIT_WORKER_ENGINE_FAKE_MODEL_H_
#define HC_TESTS_UNIT_WORKER_ENGINE_FAKE_MODEL_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "worker/engine/model_runner.h"
#include "worker/runtime/cache_memory.h"

namespace hc::engine {

class FakeModel final : public ModelRunner {
 public:
  // What one sequence of a Forward call held.
  struct SeqRecord {
    int32_t mamba_slot = -1;
    int64_t num_computed_tokens = 0;
    int64_t num_tokens = 0;
    int32_t first_token = -1;
  };

  FakeModel(runtime::CacheMemory* memory, int vocab) : memory_(memory), vocab_(vocab) {}

  int vocab_size() const override { return vocab_; }

  absl::Status Forward(std::span<const ForwardSeq> batch, std::span<float> logits) override {
    ++forward_calls_;
    const auto& kv = memory_->kv_layout();
    const size_t row_elems = static_cast<size_t>(kv.num_kv_heads) * kv.head_dim;
    float* k = static_cast<float*>(memory_->k(0, 0));
    float* state = memory_->ssm(0, 0);
    const size_t slot_elems = memory_->mamba_layout().SsmSlotElems();
    int row = 0;
    std::vector<SeqRecord>& call = calls_.emplace_back();
    for (const ForwardSeq& s : batch) {
      call.push_back({.mamba_slot = s.mamba_slot,
                      .num_computed_tokens = s.num_computed_tokens,
                      .num_tokens = static_cast<int64_t>(s.tokens.size()),
                      .first_token = s.tokens[0]});
      tokens_computed_ += static_cast<int64_t>(s.tokens.size());
      float& h = state[s.mamba_slot * slot_elems];
      for (size_t i = 0; i < s.tokens.size(); ++i) {
        const int64_t pos = s.num_computed_tokens + static_cast<int64_t>(i);
        const int64_t block = s.block_table[pos / kv.block_size];
        k[(block * kv.block_size + pos % kv.block_size) * row_elems] =
            static_cast<float>(s.tokens[i]);
        // Exact in fp32: values stay below 2^24.
        h = static_cast<float>((static_cast<int64_t>(h) * 31 + s.tokens[i] + 1) % 65521);
      }
      if (!s.need_logits) continue;
      const int64_t last = s.num_computed_tokens + static_cast<int64_t>(s.tokens.size());
      uint64_t mix = static_cast<uint64_t>(h);
      for (int64_t pos = 0; pos < last; ++pos) {
        const int64_t block = s.block_table[pos / kv.block_size];
        mix = mix * 1000003u +
              static_cast<uint64_t>(k[(block * kv.block_size + pos % kv.block_size) * row_elems]);
      }
      float* out = logits.data() + static_cast<size_t>(row++) * vocab_;
      for (int v = 0; v < vocab_; ++v) out[v] = 0.0f;
      out[(mix >> 7) % vocab_] = 8.0f;
    }
    return absl::OkStatus();
  }

  int64_t tokens_computed() const { return tokens_computed_; }
  int forward_calls() const { return forward_calls_; }
  // Every Forward call's batch, in order. Read only while the engine is idle.
  const std::vector<std::vector<SeqRecord>>& calls() const { return calls_; }

 private:
  runtime::CacheMemory* memory_;
  int vocab_;
  int64_t tokens_computed_ = 0;
  int forward_calls_ = 0;
  std::vector<std::vector<SeqRecord>> calls_;
};

// Wraps a model and holds the engine thread inside one Forward call until the
// test releases it, so a test can act while the engine is known to be
// mid-step: no queued turn is admitted and no command runs meanwhile.
class GatedModel final : public ModelRunner {
 public:
  explicit GatedModel(ModelRunner* inner) : inner_(inner) {}
  int vocab_size() const override { return inner_->vocab_size(); }
  absl::Status Forward(std::span<const ForwardSeq> batch, std::span<float> logits) override {
    if (++calls_ == block_at_) {
      blocked_.Notify();
      release_.WaitForNotification();
    }
    if (fail_past_ >= 0) {
      for (const ForwardSeq& s : batch) {
        if (s.num_computed_tokens + static_cast<int64_t>(s.tokens.size()) > fail_past_) {
          fail_past_ = -1;
          return absl::InternalError("injected device error");
        }
      }
    }
    return inner_->Forward(batch, logits);
  }
  // Fails (once, computing nothing) the first Forward call in which a
  // sequence reaches past token position `position`. Set it like BlockAt.
  void FailPast(int64_t position) { fail_past_ = position; }
  // Blocks Forward call number `call` (1-based). Call before the engine runs
  // (or while it is idle): the engine thread reads it unsynchronised.
  void BlockAt(int call) { block_at_ = call; }
  // Waits until the engine thread is held in the blocked call.
  void AwaitBlocked() { blocked_.WaitForNotification(); }
  void Release() { release_.Notify(); }

 private:
  ModelRunner* inner_;
  int calls_ = 0;
  int block_at_ = -1;
  int64_t fail_past_ = -1;
  absl::Notification blocked_;
  absl::Notification release_;
};

}  // namespace hc::engine

#endif  // HC_TESTS_UNIT_WORKER_ENGINE_FAKE_MODEL_H_
