// The tensors of a Bamba checkpoint: Hugging Face names and shapes for a
// ModelConfig (docs/model-facts.md). Used by the checkpoint generator
// and by loaders to know what to expect.
#ifndef HC_WORKER_MODEL_BAMBA_TENSORS_H_
#define HC_WORKER_MODEL_BAMBA_TENSORS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "worker/model/model_config.h"
#include "worker/model/safetensors.h"

namespace hc::model {

// "model.layers.{layer}.{suffix}", e.g. LayerTensorName(3, "mamba.A_log").
std::string LayerTensorName(int layer, std::string_view suffix);

// Every tensor of the checkpoint, in a stable order (embedding, layers in
// order, final norm, lm_head unless tied), all with dtype `dtype`:
//   model.embed_tokens.weight                      [V, D]
//   per layer: input_layernorm.weight [D], pre_ff_layernorm.weight [D],
//     feed_forward.{gate,up}_proj.weight [I, D], feed_forward.down_proj.weight [D, I]
//   Mamba layer: mamba.in_proj.weight [2*d_inner + 2*G*N + H, D]
//     (+ mamba.in_proj.bias when mamba_proj_bias), mamba.conv1d.weight [conv_dim, 1, W],
//     mamba.conv1d.bias [conv_dim] (when mamba_conv_bias), mamba.dt_bias [H],
//     mamba.A_log [H], mamba.D [H], mamba.norm.weight [d_inner],
//     mamba.out_proj.weight [D, d_inner] (+ .bias when mamba_proj_bias)
//   attention layer: self_attn.q_proj.weight [Hq*hd, D], self_attn.{k,v}_proj.weight
//     [Hkv*hd, D], self_attn.o_proj.weight [D, Hq*hd]
//   model.final_layernorm.weight [D]; lm_head.weight [V, D] unless tied.
std::vector<TensorSpec> BambaTensorSpecs(const ModelConfig& config,
                                         runtime::DType dtype = runtime::DType::kF32);

int64_t CountParameters(const std::vector<TensorSpec>& specs);

}  // namespace hc::model

#endif  // HC_WORKER_MODEL_BAMBA_TENSORS_H_
