// Hyper-parameters of a Bamba hybrid model (Mamba2 + attention layers), as read from a
// Hugging Face `config.json` (model_type "bamba"). Facts and sources:
// docs/model-facts.md.
#ifndef HC_WORKER_MODEL_MODEL_CONFIG_H_
#define HC_WORKER_MODEL_MODEL_CONFIG_H_

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace hc::model {

struct ModelConfig {
  int hidden_size = 0;        // D
  int intermediate_size = 0;  // MLP width
  int num_hidden_layers = 0;
  std::vector<int> attn_layer_indices;  // the other layers are Mamba2

  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  int head_dim = 0;  // hidden_size / num_attention_heads unless given

  int mamba_n_heads = 0;   // H
  int mamba_d_head = 0;    // P ("auto" resolves to d_inner / H)
  int mamba_n_groups = 1;  // G
  int mamba_d_state = 0;   // N
  int mamba_d_conv = 4;    // W
  int mamba_expand = 2;
  int mamba_chunk_size = 256;
  bool mamba_conv_bias = true;
  bool mamba_proj_bias = false;
  float time_step_min_limit = 0.0f;  // dt clamp (time_step_limit), default (0, inf)
  float time_step_max_limit = std::numeric_limits<float>::infinity();

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
  int d_inner() const { return mamba_expand * hidden_size; }
  int conv_dim() const { return d_inner() + 2 * mamba_n_groups * mamba_d_state; }
  int in_proj_dim() const {
    return 2 * d_inner() + 2 * mamba_n_groups * mamba_d_state + mamba_n_heads;
  }
  int rotary_dim() const { return static_cast<int>(head_dim * partial_rotary_factor); }
  bool IsAttentionLayer(int layer) const {
    return std::find(attn_layer_indices.begin(), attn_layer_indices.end(), layer) !=
           attn_layer_indices.end();
  }
  int num_attention_layers() const { return static_cast<int>(attn_layer_indices.size()); }
  int num_mamba_layers() const { return num_hidden_layers - num_attention_layers(); }
};

}  // namespace hc::model

#endif  // HC_WORKER_MODEL_MODEL_CONFIG_H_
