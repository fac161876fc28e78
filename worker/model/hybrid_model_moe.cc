#include "worker/model/hybrid_model_moe.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace hc::model::internal {
namespace {

// Indices of the k largest of `v` (ties: lower index first), in descending order.
std::vector<int> TopK(const std::vector<float>& v, int k) {
  std::vector<int> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int a, int b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  idx.resize(k);
  return idx;
}

// Granite: top-k of the logits, softmax over the chosen k (transformers'
// GraniteMoeHybridTopKRouter).
void SoftmaxTopK(const float* logits, int E, int k, std::vector<int>* experts,
                 std::vector<float>* weights) {
  const std::vector<float> v(logits, logits + E);
  *experts = TopK(v, k);
  const float top = v[(*experts)[0]];
  double sum = 0.0;
  weights->resize(k);
  for (int j = 0; j < k; ++j) {
    (*weights)[j] = std::exp(v[(*experts)[j]] - top);
    sum += (*weights)[j];
  }
  for (float& w : *weights) w = static_cast<float>(w / sum);
}

// Nemotron-H: sigmoid scores, group-limited choice on score + bias, weights
// from the scores (transformers' NemotronHTopkRouter).
void SigmoidGroupTopK(const ModelConfig& c, const float* logits, const std::vector<float>& bias,
                      std::vector<int>* experts, std::vector<float>* weights) {
  const int E = c.num_experts, groups = c.moe_n_group, per_group = E / groups;
  std::vector<float> scores(E), choice(E);
  for (int e = 0; e < E; ++e) {
    scores[e] = 1.0f / (1.0f + std::exp(-logits[e]));
    choice[e] = scores[e] + (bias.empty() ? 0.0f : bias[e]);
  }
  std::vector<float> group_score(groups);
  for (int g = 0; g < groups; ++g) {
    const std::vector<float> members(choice.begin() + g * per_group,
                                     choice.begin() + (g + 1) * per_group);
    const std::vector<int> best = TopK(members, 2);
    group_score[g] = members[best[0]] + members[best[1]];
  }
  std::vector<bool> keep(groups, false);
  for (int g : TopK(group_score, c.moe_topk_group)) keep[g] = true;
  for (int e = 0; e < E; ++e) {
    if (!keep[e / per_group]) choice[e] = -std::numeric_limits<float>::infinity();
  }
  *experts = TopK(choice, c.num_experts_per_tok);
  weights->clear();
  float sum = 0.0f;
  for (int e : *experts) {
    weights->push_back(scores[e]);
    sum += scores[e];
  }
  for (float& w : *weights) {
    if (c.moe_norm_topk_prob) w /= sum + 1e-20f;
    w *= c.moe_routed_scaling_factor;
  }
}

}  // namespace

void RouteTokens(const ModelConfig& c, const float* logits, int num_tokens,
                 const std::vector<float>& bias, Routing* out) {
  const int E = c.num_experts, k = c.num_experts_per_tok;
  std::vector<std::vector<std::pair<int32_t, float>>> per_expert(E);
  std::vector<int> experts;
  std::vector<float> weights;
  for (int t = 0; t < num_tokens; ++t) {
    const float* row = logits + static_cast<int64_t>(t) * E;
    if (c.moe_router == MoeRouter::kSoftmaxTopK) {
      SoftmaxTopK(row, E, k, &experts, &weights);
    } else {
      SigmoidGroupTopK(c, row, bias, &experts, &weights);
    }
    for (int j = 0; j < k; ++j) per_expert[experts[j]].push_back({t, weights[j]});
  }
  out->rows.clear();
  out->weights.clear();
  out->offsets.assign(1, 0);
  for (const auto& list : per_expert) {
    for (const auto& [row, w] : list) {
      out->rows.push_back(row);
      out->weights.push_back(w);
    }
    out->offsets.push_back(static_cast<int>(out->rows.size()));
  }
}

}  // namespace hc::model::internal
