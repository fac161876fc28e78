#include "worker/model/model_tensors.h"

#include "absl/strings/str_cat.h"

namespace hc::model {

TensorNames::TensorNames(const ModelConfig& c, std::string_view root) : arch_(c.architecture) {
  root_ = arch_ != Architecture::kNemotronH ? "model."
          : root.empty()                    ? "backbone."
                                            : std::string(root);
}

std::string TensorNames::LayerPrefix(int layer) const {
  return absl::StrCat(root_, "layers.", layer, ".");
}

std::string TensorNames::Embed() const {
  return root_ + (arch_ == Architecture::kNemotronH ? "embeddings.weight" : "embed_tokens.weight");
}

std::string TensorNames::FinalNorm() const {
  switch (arch_) {
    case Architecture::kBamba:
      return root_ + "final_layernorm.weight";
    case Architecture::kGraniteMoeHybrid:
      return root_ + "norm.weight";
    case Architecture::kNemotronH:
      return root_ + "norm_f.weight";
  }
  return "";
}

std::string TensorNames::MixerNorm(int l) const {
  return LayerPrefix(l) +
         (arch_ == Architecture::kNemotronH ? "norm.weight" : "input_layernorm.weight");
}

std::string TensorNames::FfnNorm(int l) const {
  switch (arch_) {
    case Architecture::kBamba:
      return LayerPrefix(l) + "pre_ff_layernorm.weight";
    case Architecture::kGraniteMoeHybrid:
      return LayerPrefix(l) + "post_attention_layernorm.weight";
    case Architecture::kNemotronH:
      return LayerPrefix(l) + "norm.weight";
  }
  return "";
}

std::string TensorNames::Mamba(int l, std::string_view suffix) const {
  return absl::StrCat(LayerPrefix(l), arch_ == Architecture::kNemotronH ? "mixer." : "mamba.",
                      std::string(suffix));
}

std::string TensorNames::Attention(int l, std::string_view suffix) const {
  return absl::StrCat(LayerPrefix(l), arch_ == Architecture::kNemotronH ? "mixer." : "self_attn.",
                      std::string(suffix));
}

namespace {
// The dense MLP's module inside a layer (Nemotron-H: an "-" layer's mixer; the
// shared MLP of its MoE layers is named by ExpertUp / ExpertDown(layer, -1)).
std::string_view MlpModule(Architecture a) {
  switch (a) {
    case Architecture::kBamba:
      return "feed_forward.";
    case Architecture::kGraniteMoeHybrid:
      return "shared_mlp.";
    case Architecture::kNemotronH:
      return "mixer.";
  }
  return "";
}
}  // namespace

std::string TensorNames::MlpGate(int l) const {
  return absl::StrCat(LayerPrefix(l), std::string(MlpModule(arch_)), "gate_proj.weight");
}
std::string TensorNames::MlpUp(int l) const {
  return absl::StrCat(LayerPrefix(l), std::string(MlpModule(arch_)), "up_proj.weight");
}
std::string TensorNames::MlpGateUp(int l) const {
  return absl::StrCat(LayerPrefix(l), std::string(MlpModule(arch_)), "input_linear.weight");
}
std::string TensorNames::MlpDown(int l) const {
  return absl::StrCat(
      LayerPrefix(l), std::string(MlpModule(arch_)),
      arch_ == Architecture::kGraniteMoeHybrid ? "output_linear.weight" : "down_proj.weight");
}

std::string TensorNames::Router(int l) const {
  return LayerPrefix(l) + (arch_ == Architecture::kNemotronH
                               ? "mixer.gate.weight"
                               : "block_sparse_moe.router.layer.weight");
}
std::string TensorNames::RouterBias(int l) const {
  return LayerPrefix(l) + "mixer.gate.e_score_correction_bias";
}
std::string TensorNames::ExpertGateUp(int l) const {
  return LayerPrefix(l) + "block_sparse_moe.input_linear.weight";
}
std::string TensorNames::ExpertUp(int l, int e) const {
  if (e < 0) return LayerPrefix(l) + "mixer.shared_experts.up_proj.weight";
  return absl::StrCat(LayerPrefix(l), "mixer.experts.", e, ".up_proj.weight");
}
std::string TensorNames::ExpertDown(int l, int e) const {
  if (arch_ == Architecture::kGraniteMoeHybrid) {
    return LayerPrefix(l) + "block_sparse_moe.output_linear.weight";
  }
  if (e < 0) return LayerPrefix(l) + "mixer.shared_experts.down_proj.weight";
  return absl::StrCat(LayerPrefix(l), "mixer.experts.", e, ".down_proj.weight");
}

std::vector<TensorSpec> ModelTensorSpecs(const ModelConfig& c, runtime::DType dtype) {
  const TensorNames n(c);
  const int64_t D = c.hidden_size, V = c.vocab_size, I = c.intermediate_size;
  const int64_t H = c.mamba_n_heads, W = c.mamba_d_conv;
  const int64_t d_inner = c.d_inner(), conv_dim = c.conv_dim(), in_proj = c.in_proj_dim();
  const int64_t q_dim = static_cast<int64_t>(c.num_attention_heads) * c.head_dim;
  const int64_t kv_dim = static_cast<int64_t>(c.num_key_value_heads) * c.head_dim;
  const int64_t E = c.num_experts, Ie = c.moe_intermediate_size;
  const int64_t Is = c.moe_shared_intermediate_size;
  const bool nemotron = c.architecture == Architecture::kNemotronH;
  std::vector<TensorSpec> specs;
  auto add = [&](std::string name, std::vector<int64_t> shape,
                 runtime::DType dt = runtime::DType::kF32) {
    specs.push_back(TensorSpec{std::move(name), dtype, std::move(shape)});
    if (dt != dtype && dt == runtime::DType::kF32 && nemotron) specs.back().dtype = dt;
  };
  add(n.Embed(), {V, D});
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerSpec& spec = c.layers[l];
    add(n.MixerNorm(l), {D});  // Nemotron-H: the block's only norm
    if (spec.mixer == MixerKind::kAttention) {
      add(n.Attention(l, "q_proj.weight"), {q_dim, D});
      add(n.Attention(l, "k_proj.weight"), {kv_dim, D});
      add(n.Attention(l, "v_proj.weight"), {kv_dim, D});
      add(n.Attention(l, "o_proj.weight"), {D, q_dim});
    } else if (spec.mixer == MixerKind::kMamba) {
      add(n.Mamba(l, "in_proj.weight"), {in_proj, D});
      if (c.mamba_proj_bias) add(n.Mamba(l, "in_proj.bias"), {in_proj});
      add(n.Mamba(l, "conv1d.weight"), {conv_dim, 1, W});
      if (c.mamba_conv_bias) add(n.Mamba(l, "conv1d.bias"), {conv_dim});
      add(n.Mamba(l, "dt_bias"), {H});
      add(n.Mamba(l, "A_log"), {H});
      add(n.Mamba(l, "D"), {H});
      add(n.Mamba(l, "norm.weight"), {d_inner});
      add(n.Mamba(l, "out_proj.weight"), {D, d_inner});
      if (c.mamba_proj_bias) add(n.Mamba(l, "out_proj.bias"), {D});
    }
    if (spec.ffn == FfnKind::kNone) continue;
    if (!nemotron) add(n.FfnNorm(l), {D});
    switch (c.architecture) {
      case Architecture::kBamba:
        add(n.MlpGate(l), {I, D});
        add(n.MlpUp(l), {I, D});
        add(n.MlpDown(l), {D, I});
        break;
      case Architecture::kGraniteMoeHybrid:
        if (spec.ffn == FfnKind::kMoe) {
          add(n.ExpertGateUp(l), {E, 2 * Ie, D});
          add(n.ExpertDown(l), {E, D, Ie});
          add(n.Router(l), {E, D});
        }
        add(n.MlpGateUp(l), {2 * I, D});
        add(n.MlpDown(l), {D, I});
        break;
      case Architecture::kNemotronH:
        if (spec.ffn == FfnKind::kMlp) {
          add(n.MlpUp(l), {I, D});
          add(n.MlpDown(l), {D, I});
        } else {
          add(n.Router(l), {E, D}, runtime::DType::kF32);
          add(n.RouterBias(l), {E}, runtime::DType::kF32);
          for (int e = 0; e < E; ++e) {
            add(n.ExpertUp(l, e), {Ie, D});
            add(n.ExpertDown(l, e), {D, Ie});
          }
          add(n.ExpertUp(l, -1), {Is, D});
          add(n.ExpertDown(l, -1), {D, Is});
        }
        break;
    }
  }
  add(n.FinalNorm(), {D});
  if (!c.tie_word_embeddings) add(n.LmHead(), {V, D});
  return specs;
}

int64_t CountParameters(const std::vector<TensorSpec>& specs) {
  int64_t n = 0;
  for (const TensorSpec& s : specs) n += s.NumElements();
  return n;
}

}  // namespace hc::model
