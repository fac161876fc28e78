// Reading and writing Hugging Face `config.json` for Bamba (BambaForCausalLM,
// model_type "bamba") into ModelConfig.
#ifndef HC_WORKER_MODEL_MODEL_CONFIG_IO_H_
#define HC_WORKER_MODEL_MODEL_CONFIG_IO_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "worker/model/model_config.h"

namespace hc::model {

// Parses config.json text. Required keys: hidden_size, intermediate_size,
// num_hidden_layers, num_attention_heads, mamba_n_heads, mamba_d_state,
// vocab_size. Other keys default as in transformers' BambaConfig:
//   num_key_value_heads 8, head_dim hidden/heads, attn_layer_indices [] (all
//   Mamba), mamba_d_head "auto" (= mamba_expand*hidden/mamba_n_heads),
//   mamba_n_groups 1, mamba_d_conv 4, mamba_expand 2, mamba_chunk_size 256,
//   mamba_conv_bias true, mamba_proj_bias false, time_step_limit (0, inf),
//   rms_norm_eps 1e-5, rope_theta 10000 (also read from rope_parameters),
//   partial_rotary_factor 0.5 (or attn_rotary_emb / head_dim when only the
//   rotary dim is given), tie_word_embeddings false, bos 1, eos 2, pad 0
//   (null -> -1; a list of eos ids -> the first), max_position_embeddings 262144.
// Python's NaN/Infinity literals are accepted. The result is validated
// (ValidateModelConfig). INVALID_ARGUMENT naming the key on any problem.
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text);

// Reads `<dir>/config.json`, or `path` itself when it names a file.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

// Checks internal consistency: positive sizes, mamba_n_heads * mamba_d_head ==
// mamba_expand * hidden_size, mamba_n_heads % mamba_n_groups == 0,
// num_attention_heads % num_key_value_heads == 0, attention layer indices
// unique and in [0, num_hidden_layers), rotary dim even and in (0, head_dim],
// token ids in [-1, vocab_size), time-step limits ordered.
absl::Status ValidateModelConfig(const ModelConfig& config);

// config.json text for `config` (model_type bamba, architectures
// [BambaForCausalLM], the keys above), loadable by transformers' BambaConfig.
std::string ModelConfigToJson(const ModelConfig& config);

}  // namespace hc::model

#endif  // HC_WORKER_MODEL_MODEL_CONFIG_IO_H_
