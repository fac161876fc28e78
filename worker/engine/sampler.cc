#include "worker/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace hc::engine {

float TokenLogprob(std::span<const float> logits, int32_t token) {
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (const float l : logits) sum += std::exp(static_cast<double>(l) - max);
  return static_cast<float>(static_cast<double>(logits[token]) - max - std::log(sum));
}

void AppendTopLogprobs(std::span<const float> logits, int k, std::vector<TokenAlternative>* out) {
  const int vocab = static_cast<int>(logits.size());
  k = std::min(k, vocab);
  if (k <= 0) return;
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (const float l : logits) sum += std::exp(static_cast<double>(l) - max);
  const double log_z = static_cast<double>(max) + std::log(sum);
  // A min-heap of the best k seen (its top is the worst kept); one pass, so
  // the cost is O(vocab log k) rather than a sort of the vocabulary.
  const auto better = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  std::vector<int32_t> heap;
  heap.reserve(static_cast<size_t>(k));
  for (int32_t i = 0; i < vocab; ++i) {
    if (static_cast<int>(heap.size()) < k) {
      heap.push_back(i);
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (better(i, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = i;
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
  std::sort(heap.begin(), heap.end(), better);
  for (const int32_t t : heap) {
    out->push_back({t, static_cast<float>(static_cast<double>(logits[t]) - log_z)});
  }
}

SampledToken Sampler::Sample(std::span<const float> logits, const SamplingOptions& options) {
  const int vocab = static_cast<int>(logits.size());
  int32_t chosen = 0;
  if (options.temperature <= 0.0f || options.top_k == 1) {
    // Greedy; ties go to the lowest id.
    chosen = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  } else {
    // Candidates sorted by logit, descending (ties by id), truncated to top-k.
    order_.resize(vocab);
    std::iota(order_.begin(), order_.end(), 0);
    const auto by_logit = [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    };
    int keep = vocab;
    if (options.top_k > 0 && options.top_k < vocab) {
      keep = options.top_k;
      std::partial_sort(order_.begin(), order_.begin() + keep, order_.end(), by_logit);
    } else if (options.top_p < 1.0f) {
      std::sort(order_.begin(), order_.end(), by_logit);
    }
    // Softmax over the kept candidates at the given temperature.
    probs_.resize(keep);
    const float max_logit = *std::max_element(logits.begin(), logits.end());
    double total = 0.0;
    for (int i = 0; i < keep; ++i) {
      probs_[i] = static_cast<float>(
          std::exp((static_cast<double>(logits[order_[i]]) - max_logit) / options.temperature));
      total += probs_[i];
    }
    // Top-p: the smallest prefix of the sorted candidates whose mass reaches
    // top_p (at least one token).
    if (options.top_p < 1.0f) {
      double mass = 0.0;
      int cut = keep;
      for (int i = 0; i < keep; ++i) {
        mass += probs_[i] / total;
        if (mass >= options.top_p) {
          cut = i + 1;
          break;
        }
      }
      keep = cut;
      total = 0.0;
      for (int i = 0; i < keep; ++i) total += probs_[i];
    }
    std::uniform_real_distribution<double> uniform(0.0, total);
    const double r = uniform(rng_);
    double acc = 0.0;
    chosen = order_[keep - 1];
    for (int i = 0; i < keep; ++i) {
      acc += probs_[i];
      if (r < acc) {
        chosen = order_[i];
        break;
      }
    }
  }
  return {chosen, TokenLogprob(logits, chosen)};
}

}  // namespace hc::engine
