#include "worker/model/model_config.h"

#include <algorithm>
#include <cmath>

namespace hc::model {

std::string_view ModelTypeName(Architecture arch) {
  switch (arch) {
    case Architecture::kBamba:
      return "bamba";
    case Architecture::kGraniteMoeHybrid:
      return "granitemoehybrid";
    case Architecture::kNemotronH:
      return "nemotron_h";
  }
  return "?";
}

float ModelConfig::attention_scale() const {
  if (attention_multiplier > 0.0f) return attention_multiplier;
  return 1.0f / std::sqrt(static_cast<float>(head_dim));
}

int ModelConfig::CountMixers(MixerKind kind) const {
  return static_cast<int>(std::count_if(layers.begin(), layers.end(),
                                        [&](const LayerSpec& l) { return l.mixer == kind; }));
}

int ModelConfig::CountFfns(FfnKind kind) const {
  return static_cast<int>(std::count_if(layers.begin(), layers.end(),
                                        [&](const LayerSpec& l) { return l.ffn == kind; }));
}

std::vector<int> ModelConfig::AttentionLayerIndices() const {
  std::vector<int> out;
  for (int i = 0; i < static_cast<int>(layers.size()); ++i) {
    if (layers[i].mixer == MixerKind::kAttention) out.push_back(i);
  }
  return out;
}

void ModelConfig::SetMixerLayers(int num_layers, const std::vector<int>& attention_layers,
                                 FfnKind ffn) {
  num_hidden_layers = num_layers;
  layers.assign(std::max(num_layers, 0), LayerSpec{MixerKind::kMamba, ffn});
  for (int i : attention_layers) {
    if (i >= 0 && i < num_layers) layers[i].mixer = MixerKind::kAttention;
  }
}

}  // namespace hc::model
