#include "worker/model/bamba_tensors.h"

#include "absl/strings/str_cat.h"

namespace hc::model {

std::string LayerTensorName(int layer, std::string_view suffix) {
  return absl::StrCat("model.layers.", layer, ".", std::string(suffix));
}

std::vector<TensorSpec> BambaTensorSpecs(const ModelConfig& c, runtime::DType dtype) {
  const int64_t D = c.hidden_size, V = c.vocab_size, I = c.intermediate_size;
  const int64_t H = c.mamba_n_heads, W = c.mamba_d_conv;
  const int64_t d_inner = c.d_inner(), conv_dim = c.conv_dim(), in_proj = c.in_proj_dim();
  const int64_t q_dim = static_cast<int64_t>(c.num_attention_heads) * c.head_dim;
  const int64_t kv_dim = static_cast<int64_t>(c.num_key_value_heads) * c.head_dim;
  std::vector<TensorSpec> specs;
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    specs.push_back(TensorSpec{std::move(name), dtype, std::move(shape)});
  };
  add("model.embed_tokens.weight", {V, D});
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    auto n = [&](std::string_view s) { return LayerTensorName(l, s); };
    add(n("input_layernorm.weight"), {D});
    if (c.IsAttentionLayer(l)) {
      add(n("self_attn.q_proj.weight"), {q_dim, D});
      add(n("self_attn.k_proj.weight"), {kv_dim, D});
      add(n("self_attn.v_proj.weight"), {kv_dim, D});
      add(n("self_attn.o_proj.weight"), {D, q_dim});
    } else {
      add(n("mamba.in_proj.weight"), {in_proj, D});
      if (c.mamba_proj_bias) add(n("mamba.in_proj.bias"), {in_proj});
      add(n("mamba.conv1d.weight"), {conv_dim, 1, W});
      if (c.mamba_conv_bias) add(n("mamba.conv1d.bias"), {conv_dim});
      add(n("mamba.dt_bias"), {H});
      add(n("mamba.A_log"), {H});
      add(n("mamba.D"), {H});
      add(n("mamba.norm.weight"), {d_inner});
      add(n("mamba.out_proj.weight"), {D, d_inner});
      if (c.mamba_proj_bias) add(n("mamba.out_proj.bias"), {D});
    }
    add(n("pre_ff_layernorm.weight"), {D});
    add(n("feed_forward.gate_proj.weight"), {I, D});
    add(n("feed_forward.up_proj.weight"), {I, D});
    add(n("feed_forward.down_proj.weight"), {D, I});
  }
  add("model.final_layernorm.weight", {D});
  if (!c.tie_word_embeddings) add("lm_head.weight", {V, D});
  return specs;
}

int64_t CountParameters(const std::vector<TensorSpec>& specs) {
  int64_t n = 0;
  for (const TensorSpec& s : specs) n += s.NumElements();
  return n;
}

}  // namespace hc::model
