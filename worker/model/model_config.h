// Hyper-parameters of a hybrid Mamba2 + attention model, as read from a
// Hugging Face `config.json`: Bamba (model_type "bamba"), Granite-4.0-H
// ("granitemoehybrid") or Nemotron-H ("nemotron_h"). Facts and sources:
// docs/model-facts.md.
//
// A model is a list of layers; each layer has an optional mixer block
// (Mamba2 or attention) and an optional feed-forward block (dense MLP or
// MoE), each with its own pre-norm and residual add. Bamba and Granite layers
// have both blocks; every Nemotron-H layer has exactly one.
#ifndef HC_WORKER_MODEL_MODEL_CONFIG_H_
#define HC_WORKER_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <limits>
#include <string_view>
#include <vector>

namespace hc::model {

enum class Architecture { kBamba, kGraniteMoeHybrid, kNemotronH };
// The config.json model_type of an architecture ("bamba", "granitemoehybrid", "nemotron_h").
std::string_view ModelTypeName(Architecture arch);

enum class MixerKind { kNone, kMamba, kAttention };
enum class FfnKind { kNone, kMlp, kMoe };
struct LayerSpec {
  MixerKind mixer = MixerKind::kMamba;
  FfnKind ffn = FfnKind::kMlp;
  bool operator==(const LayerSpec&) const = default;
};

// The MLP activation: SwiGLU `silu(gate) * up` (Bamba, Granite; fused gate|up
// weights) or `relu(up)^2` without a gate (Nemotron-H).
enum class MlpActivation { kSwiGlu, kRelu2 };

// How MoE experts are chosen:
//   kSoftmaxTopK (Granite): top-k of the router logits, softmax over those k.
//   kSigmoidGroupTopK (Nemotron-H): sigmoid scores; the choice adds the
//     correction bias and keeps the top `moe_topk_group` of `moe_n_group` expert
//     groups (a group scores the sum of its two best); the weights are the
//     chosen sigmoid scores, normalised to sum 1 when moe_norm_topk_prob, times
//     moe_routed_scaling_factor.
enum class MoeRouter { kSoftmaxTopK, kSigmoidGroupTopK };

struct ModelConfig {
  Architecture architecture = Architecture::kBamba;
  int hidden_size = 0;        // D
  int intermediate_size = 0;  // width of the dense MLP (Granite: shared_intermediate_size)
  int num_hidden_layers = 0;
  std::vector<LayerSpec> layers;  // num_hidden_layers entries

  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  int head_dim = 0;  // hidden_size / num_attention_heads unless given
  bool use_rope = true;
  float attention_multiplier = 0.0f;  // the softmax scale; 0 means head_dim^-0.5

  int mamba_n_heads = 0;   // H
  int mamba_d_head = 0;    // P ("auto" resolves to mamba_expand * D / H)
  int mamba_n_groups = 1;  // G
  int mamba_d_state = 0;   // N
  int mamba_d_conv = 4;    // W
  int mamba_expand = 2;
  int mamba_chunk_size = 256;
  bool mamba_conv_bias = true;
  bool mamba_proj_bias = false;
  float time_step_min_limit = 0.0f;  // dt clamp (time_step_limit), default (0, inf)
  float time_step_max_limit = std::numeric_limits<float>::infinity();

  MlpActivation mlp_activation = MlpActivation::kSwiGlu;

  // MoE blocks: routed experts plus a shared MLP, summed.
  int num_experts = 0;
  int num_experts_per_tok = 0;
  int moe_intermediate_size = 0;         // width of one routed expert
  int moe_shared_intermediate_size = 0;  // width of the shared MLP of a MoE block
  MoeRouter moe_router = MoeRouter::kSoftmaxTopK;
  int moe_n_group = 1;
  int moe_topk_group = 1;
  bool moe_norm_topk_prob = true;
  float moe_routed_scaling_factor = 1.0f;

  // µP multipliers (Granite; 1 elsewhere).
  float embedding_multiplier = 1.0f;  // embeddings are multiplied by it
  float residual_multiplier = 1.0f;   // each block's output is, before the residual add
  float logits_scaling = 1.0f;        // logits are divided by it

  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  float partial_rotary_factor = 1.0f;  // Bamba checkpoints use 0.5

  int vocab_size = 0;
  bool tie_word_embeddings = false;
  int bos_token_id = -1;
  int eos_token_id = -1;
  int pad_token_id = -1;
  int max_position_embeddings = 0;

  // Derived sizes.
  int d_inner() const { return mamba_n_heads * mamba_d_head; }
  int conv_dim() const { return d_inner() + 2 * mamba_n_groups * mamba_d_state; }
  int in_proj_dim() const {
    return 2 * d_inner() + 2 * mamba_n_groups * mamba_d_state + mamba_n_heads;
  }
  int rotary_dim() const { return static_cast<int>(head_dim * partial_rotary_factor); }
  float attention_scale() const;
  bool IsAttentionLayer(int layer) const {
    return layer >= 0 && layer < static_cast<int>(layers.size()) &&
           layers[layer].mixer == MixerKind::kAttention;
  }
  int CountMixers(MixerKind kind) const;
  int CountFfns(FfnKind kind) const;
  int num_attention_layers() const { return CountMixers(MixerKind::kAttention); }
  int num_mamba_layers() const { return CountMixers(MixerKind::kMamba); }
  // The attention layers' indices, ascending.
  std::vector<int> AttentionLayerIndices() const;
  // Bamba / Granite layout: every layer is a mixer (attention at
  // `attention_layers`, else Mamba2) plus `ffn`. Sets num_hidden_layers too.
  void SetMixerLayers(int num_layers, const std::vector<int>& attention_layers,
                      FfnKind ffn = FfnKind::kMlp);
};

}  // namespace hc::model

#endif  // HC_WORKER_MODEL_MODEL_CONFIG_H_
