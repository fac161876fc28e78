// Internal to worker/model: MoE routing on the host. Every tensor-parallel
// rank routes the same (replicated) router logits, so all ranks agree.
#ifndef HC_WORKER_MODEL_HYBRID_MODEL_MOE_H_
#define HC_WORKER_MODEL_HYBRID_MODEL_MOE_H_

#include <cstdint>
#include <vector>

#include "worker/model/model_config.h"

namespace hc::model::internal {

// The tokens each expert serves: expert e serves rows[offsets[e] ..
// offsets[e + 1]) (token indices, ascending) with the matching weights.
struct Routing {
  std::vector<int32_t> rows;
  std::vector<float> weights;
  std::vector<int> offsets;  // [num_experts + 1]
};

// Routes `num_tokens` tokens from their router logits ([num_tokens,
// num_experts] row-major) as config.moe_router says (model_config.h), with
// Nemotron-H's correction bias `bias` ([num_experts], empty for Granite).
// Ties between equal scores go to the lower expert index.
void RouteTokens(const ModelConfig& config, const float* logits, int num_tokens,
                 const std::vector<float>& bias, Routing* out);

}  // namespace hc::model::internal

#endif  // HC_WORKER_MODEL_HYBRID_MODEL_MOE_H_
