#include "worker/engine/hybrid_model_runner.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace hc::engine {

absl::Status HybridModelRunner::Forward(std::span<const ForwardSeq> batch,
                                        std::span<float> logits) {
  scratch_.seqs.resize(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const ForwardSeq& s = batch[i];
    model::SequenceInput& in = scratch_.seqs[i];
    in.token_ids = s.tokens;
    in.num_computed_tokens = static_cast<int>(s.num_computed_tokens);
    in.block_table = s.block_table;
    in.mamba_slot = s.mamba_slot;
    in.need_logits = s.need_logits;
  }
  HC_RETURN_IF_ERROR(model_->Forward(scratch_, cache_, &logits_));
  if (logits_.size() != logits.size()) {
    return absl::InternalError(absl::StrCat("model returned ", logits_.size(),
                                            " logits, the engine expects ", logits.size()));
  }
  std::copy(logits_.begin(), logits_.end(), logits.begin());
  return absl::OkStatus();
}

}  // namespace hc::engine
