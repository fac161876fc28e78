// config.json keys of Granite-4.0-H (model_type "granitemoehybrid",
// transformers' GraniteMoeHybridConfig) and Nemotron-H ("nemotron_h",
// NemotronHConfig): defaults as in transformers 5.x, facts in
// docs/model-facts.md.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/model/config_json.h"

namespace hc::model::internal {
namespace {

// A mixer name of `layer_types` / `layers_block_type`, in the current or the
// legacy spelling transformers accepts.
bool MixerFromName(std::string_view name, LayerSpec* spec) {
  if (name == "mamba" || name == "linear_attention") {
    *spec = {MixerKind::kMamba, FfnKind::kNone};
  } else if (name == "attention" || name == "full_attention") {
    *spec = {MixerKind::kAttention, FfnKind::kNone};
  } else {
    return false;
  }
  return true;
}

absl::Status ReadGraniteLayers(const ConfigReader& r, ModelConfig& c, FfnKind ffn) {
  const char* key = r.Find("layer_types") != nullptr ? "layer_types" : "layers_block_type";
  const json::Value* v = r.Find(key);
  if (v == nullptr) {  // transformers' default: every layer Mamba2
    c.SetMixerLayers(c.num_hidden_layers, {}, ffn);
    return absl::OkStatus();
  }
  if (!v->is_array()) return KeyError(key, "must be a list of \"mamba\" / \"attention\"");
  c.layers.clear();
  for (const json::Value& t : v->AsArray()) {
    LayerSpec spec;
    if (!t.is_string() || !MixerFromName(t.AsString(), &spec)) {
      return KeyError(
          key, absl::StrCat("entry ", json::Serialize(t), " is not \"mamba\" or \"attention\""));
    }
    spec.ffn = ffn;
    c.layers.push_back(spec);
  }
  if (static_cast<int>(c.layers.size()) != c.num_hidden_layers) {
    return KeyError(key, absl::StrCat("has ", c.layers.size(),
                                      " entries for num_hidden_layers = ", c.num_hidden_layers));
  }
  return absl::OkStatus();
}

absl::Status ReadNemotronLayers(const ConfigReader& r, ModelConfig& c) {
  c.layers.clear();
  if (const json::Value* v = r.Find("layers_block_type"); v != nullptr) {
    if (!v->is_array()) return KeyError("layers_block_type", "must be a list of strings");
    for (const json::Value& t : v->AsArray()) {
      LayerSpec spec;
      if (t.is_string() && MixerFromName(t.AsString(), &spec)) {
      } else if (t.is_string() && t.AsString() == "mlp") {
        spec = {MixerKind::kNone, FfnKind::kMlp};
      } else if (t.is_string() && t.AsString() == "moe") {
        spec = {MixerKind::kNone, FfnKind::kMoe};
      } else {
        return KeyError("layers_block_type", absl::StrCat("entry ", json::Serialize(t),
                                                          " is not mamba, attention, mlp or moe"));
      }
      c.layers.push_back(spec);
    }
  } else if (const json::Value* p = r.Find("hybrid_override_pattern"); p != nullptr) {
    if (!p->is_string()) return KeyError("hybrid_override_pattern", "must be a string");
    for (char ch : p->AsString()) {
      switch (ch) {
        case 'M':
          c.layers.push_back({MixerKind::kMamba, FfnKind::kNone});
          break;
        case '*':
          c.layers.push_back({MixerKind::kAttention, FfnKind::kNone});
          break;
        case '-':
          c.layers.push_back({MixerKind::kNone, FfnKind::kMlp});
          break;
        case 'E':
          c.layers.push_back({MixerKind::kNone, FfnKind::kMoe});
          break;
        default:
          return KeyError("hybrid_override_pattern",
                          absl::StrCat("has '", std::string(1, ch),
                                       "'; only M (Mamba2), * (attention), - (MLP), E (MoE)"));
      }
    }
  } else {
    return KeyError("layers_block_type", "(or hybrid_override_pattern) is required");
  }
  if (c.layers.empty()) return KeyError("layers_block_type", "must not be empty");
  const int n = static_cast<int>(c.layers.size());
  if (r.Find("num_hidden_layers") != nullptr) {
    HC_RETURN_IF_ERROR(r.Int("num_hidden_layers", false, &c.num_hidden_layers));
    if (c.num_hidden_layers != n) {
      return KeyError("num_hidden_layers",
                      absl::StrCat("(", c.num_hidden_layers, ") does not match the ", n,
                                   " layers of the block pattern"));
    }
  }
  c.num_hidden_layers = n;
  return absl::OkStatus();
}

// The first of `keys` present (transformers' aliases), into *out.
absl::Status IntAlias(const ConfigReader& r, std::initializer_list<const char*> keys, int* out) {
  for (const char* k : keys) {
    if (r.Find(k) != nullptr) return r.Int(k, false, out);
  }
  return absl::OkStatus();
}

// head_dim, or attention_head_dim as the checkpoints that ship their own
// configuration_nemotron_h.py name it (nvidia/Nemotron-H-*-Base-8K; their
// modeling code sizes q/k/v by it); both present must agree.
absl::Status ReadNemotronHeadDim(const ConfigReader& r, ModelConfig& c) {
  int attention_head_dim = 0;
  HC_RETURN_IF_ERROR(r.Int("attention_head_dim", false, &attention_head_dim));
  if (r.Find("head_dim") == nullptr) {
    if (attention_head_dim != 0) c.head_dim = attention_head_dim;
    return absl::OkStatus();
  }
  HC_RETURN_IF_ERROR(r.Int("head_dim", false, &c.head_dim));
  if (attention_head_dim != 0 && attention_head_dim != c.head_dim) {
    return KeyError("attention_head_dim",
                    absl::StrCat("(", attention_head_dim, ") disagrees with head_dim (", c.head_dim,
                                 "); they name the same size"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseGraniteMoeHybrid(const ConfigReader& r, ModelConfig& c) {
  // GraniteMoeHybridConfig defaults.
  c.rms_norm_eps = 1e-6f;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.pad_token_id = -1;
  c.max_position_embeddings = 2048;
  c.attention_multiplier = 1.0f;
  c.intermediate_size = 1024;  // shared_intermediate_size
  c.num_experts = 8;
  c.num_experts_per_tok = 2;
  c.moe_intermediate_size = 11008;  // intermediate_size
  c.mamba_n_heads = 128;
  c.mamba_d_state = 256;
  c.partial_rotary_factor = 1.0f;  // the rotary embedding spans head_dim
  c.moe_router = MoeRouter::kSoftmaxTopK;
  c.mlp_activation = MlpActivation::kSwiGlu;
  HC_RETURN_IF_ERROR(r.Int("hidden_size", true, &c.hidden_size));
  HC_RETURN_IF_ERROR(r.Int("num_hidden_layers", true, &c.num_hidden_layers));
  HC_RETURN_IF_ERROR(r.Int("shared_intermediate_size", false, &c.intermediate_size));
  HC_RETURN_IF_ERROR(r.Int("intermediate_size", false, &c.moe_intermediate_size));
  HC_RETURN_IF_ERROR(r.Int("num_local_experts", false, &c.num_experts));
  HC_RETURN_IF_ERROR(r.Int("num_experts_per_tok", false, &c.num_experts_per_tok));
  if (c.num_experts < 0) return KeyError("num_local_experts", "must not be negative");
  c.moe_shared_intermediate_size = c.intermediate_size;
  HC_RETURN_IF_ERROR(r.Int("num_attention_heads", true, &c.num_attention_heads));
  c.num_key_value_heads = c.num_attention_heads;
  HC_RETURN_IF_ERROR(ReadAttentionHeads(r, c));
  HC_RETURN_IF_ERROR(r.Int("mamba_n_heads", false, &c.mamba_n_heads));
  HC_RETURN_IF_ERROR(r.Int("mamba_n_groups", false, &c.mamba_n_groups));
  HC_RETURN_IF_ERROR(r.Int("mamba_d_state", false, &c.mamba_d_state));
  HC_RETURN_IF_ERROR(r.Int("mamba_d_conv", false, &c.mamba_d_conv));
  HC_RETURN_IF_ERROR(r.Int("mamba_expand", false, &c.mamba_expand));
  HC_RETURN_IF_ERROR(r.Int("mamba_chunk_size", false, &c.mamba_chunk_size));
  HC_RETURN_IF_ERROR(r.Bool("mamba_conv_bias", &c.mamba_conv_bias));
  HC_RETURN_IF_ERROR(r.RequireBool("mamba_proj_bias", false, "in/out_proj biases"));
  HC_RETURN_IF_ERROR(ReadMambaHeadDim(r, c));
  HC_RETURN_IF_ERROR(ReadTimeStepLimit(r, "time_step_limit", c));
  HC_RETURN_IF_ERROR(r.Float("rms_norm_eps", &c.rms_norm_eps));
  HC_RETURN_IF_ERROR(r.Float("embedding_multiplier", &c.embedding_multiplier));
  HC_RETURN_IF_ERROR(r.Float("residual_multiplier", &c.residual_multiplier));
  HC_RETURN_IF_ERROR(r.Float("logits_scaling", &c.logits_scaling));
  HC_RETURN_IF_ERROR(r.Float("attention_multiplier", &c.attention_multiplier));
  if (!(c.attention_multiplier > 0.0f)) {
    return KeyError("attention_multiplier", "must be a positive number");
  }
  HC_RETURN_IF_ERROR(r.RequireString("hidden_act", "silu", "only silu is implemented"));
  HC_RETURN_IF_ERROR(r.RequireBool("attention_bias", false, "attention biases"));
  HC_RETURN_IF_ERROR(ReadVocabAndTokens(r, c));
  std::string pos;
  HC_RETURN_IF_ERROR(r.String("position_embedding_type", &pos));
  if (pos == "rope") {
    c.use_rope = true;
    HC_RETURN_IF_ERROR(ReadRope(r, c));
  } else if (pos.empty() || pos == "nope") {
    c.use_rope = false;  // transformers builds no rotary embedding unless "rope"
  } else {
    return KeyError("position_embedding_type",
                    absl::StrCat("is \"", pos, "\"; expected \"rope\", \"nope\" or null"));
  }
  return ReadGraniteLayers(r, c, c.num_experts > 0 ? FfnKind::kMoe : FfnKind::kMlp);
}

absl::Status ParseNemotronH(const ConfigReader& r, ModelConfig& c) {
  // NemotronHConfig defaults.
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.use_rope = false;  // Nemotron-H attention has no position embedding
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.pad_token_id = 0;
  c.max_position_embeddings = 4096;
  c.intermediate_size = 21504;
  c.mlp_activation = MlpActivation::kRelu2;
  c.mamba_d_state = 128;
  c.mamba_n_heads = 128;
  c.mamba_d_head = 64;
  c.mamba_n_groups = 8;
  c.mamba_d_conv = 4;
  c.mamba_expand = 2;
  c.mamba_chunk_size = 128;
  c.time_step_min_limit = 0.001f;  // time_step_min; the clamp is (time_step_min, inf)
  c.rms_norm_eps = 1e-5f;
  c.num_experts = 8;
  c.num_experts_per_tok = 2;
  c.moe_intermediate_size = 7688;
  c.moe_shared_intermediate_size = 7688;
  c.moe_router = MoeRouter::kSigmoidGroupTopK;
  HC_RETURN_IF_ERROR(r.Int("hidden_size", true, &c.hidden_size));
  HC_RETURN_IF_ERROR(ReadNemotronLayers(r, c));
  HC_RETURN_IF_ERROR(r.Int("num_attention_heads", false, &c.num_attention_heads));
  HC_RETURN_IF_ERROR(r.Int("num_key_value_heads", false, &c.num_key_value_heads));
  HC_RETURN_IF_ERROR(ReadNemotronHeadDim(r, c));
  HC_RETURN_IF_ERROR(r.Int("intermediate_size", false, &c.intermediate_size));
  HC_RETURN_IF_ERROR(r.RequireString("mlp_hidden_act", "relu2", "only relu2 is implemented"));
  HC_RETURN_IF_ERROR(r.RequireBool("mlp_bias", false, "MLP biases"));
  HC_RETURN_IF_ERROR(r.RequireBool("use_bias", false, "Mamba in/out_proj biases"));
  // transformers' built-in NemotronHAttention has no biases, but the checkpoints'
  // own modeling_nemotron_h.py gives q/k/v/o biases when this is true.
  HC_RETURN_IF_ERROR(r.RequireBool("attention_bias", false, "q/k/v/o projection biases"));
  HC_RETURN_IF_ERROR(r.RequireString("mamba_hidden_act", "silu", "only silu is implemented"));
  HC_RETURN_IF_ERROR(r.Int("ssm_state_size", false, &c.mamba_d_state));
  HC_RETURN_IF_ERROR(r.Int("mamba_num_heads", false, &c.mamba_n_heads));
  HC_RETURN_IF_ERROR(r.Int("mamba_head_dim", false, &c.mamba_d_head));
  HC_RETURN_IF_ERROR(IntAlias(r, {"n_groups", "mamba_n_groups"}, &c.mamba_n_groups));
  HC_RETURN_IF_ERROR(IntAlias(r, {"conv_kernel", "mamba_d_conv"}, &c.mamba_d_conv));
  HC_RETURN_IF_ERROR(IntAlias(r, {"expand", "mamba_expand"}, &c.mamba_expand));
  HC_RETURN_IF_ERROR(IntAlias(r, {"chunk_size", "mamba_chunk_size"}, &c.mamba_chunk_size));
  HC_RETURN_IF_ERROR(
      r.Bool(r.Find("use_conv_bias") != nullptr ? "use_conv_bias" : "mamba_conv_bias",
             &c.mamba_conv_bias));
  // transformers clamps dt to (time_step_min, inf) and ignores time_step_limit.
  HC_RETURN_IF_ERROR(r.Float(r.Find("time_step_min") != nullptr ? "time_step_min" : "mamba_dt_min",
                             &c.time_step_min_limit));
  c.time_step_max_limit = std::numeric_limits<float>::infinity();
  HC_RETURN_IF_ERROR(r.Float("layer_norm_epsilon", &c.rms_norm_eps));
  HC_RETURN_IF_ERROR(r.Int("n_routed_experts", false, &c.num_experts));
  HC_RETURN_IF_ERROR(r.Int("num_experts_per_tok", false, &c.num_experts_per_tok));
  HC_RETURN_IF_ERROR(r.Int("moe_intermediate_size", false, &c.moe_intermediate_size));
  HC_RETURN_IF_ERROR(
      r.Int("moe_shared_expert_intermediate_size", false, &c.moe_shared_intermediate_size));
  HC_RETURN_IF_ERROR(r.Int("n_group", false, &c.moe_n_group));
  HC_RETURN_IF_ERROR(r.Int("topk_group", false, &c.moe_topk_group));
  HC_RETURN_IF_ERROR(r.Bool("norm_topk_prob", &c.moe_norm_topk_prob));
  HC_RETURN_IF_ERROR(r.Float("routed_scaling_factor", &c.moe_routed_scaling_factor));
  if (const json::Value* latent = r.Find("moe_latent_size"); latent != nullptr) {
    return KeyUnsupported("moe_latent_size", *latent, "MoE latent projections");
  }
  return ReadVocabAndTokens(r, c);
}

namespace {

json::Value Architectures(const char* name) {
  json::Value a = json::Value::MakeArray();
  a.Append(json::Value::String(name));
  return a;
}

}  // namespace

void GraniteMoeHybridToJson(const ModelConfig& c, json::Value& root) {
  using json::Value;
  root.Set("architectures", Architectures("GraniteMoeHybridForCausalLM"));
  root.Set("model_type", Value::String("granitemoehybrid"));
  CommonToJson(c, root, c.head_dim * c.num_attention_heads != c.hidden_size);
  root.Set("attention_bias", Value::Bool(false));
  root.Set("attention_dropout", Value::Double(0.0));
  root.Set("attention_multiplier", FloatValue(c.attention_scale()));
  root.Set("embedding_multiplier", FloatValue(c.embedding_multiplier));
  root.Set("residual_multiplier", FloatValue(c.residual_multiplier));
  root.Set("logits_scaling", FloatValue(c.logits_scaling));
  root.Set("hidden_act", Value::String("silu"));
  const bool moe = c.CountFfns(FfnKind::kMoe) > 0;
  root.Set("intermediate_size", Value::Int(moe ? c.moe_intermediate_size : c.intermediate_size));
  root.Set("shared_intermediate_size", Value::Int(c.intermediate_size));
  root.Set("num_local_experts", Value::Int(moe ? c.num_experts : 0));
  root.Set("num_experts_per_tok", Value::Int(moe ? c.num_experts_per_tok : 0));
  root.Set("output_router_logits", Value::Bool(false));
  root.Set("router_aux_loss_coef", Value::Double(0.01));
  Value types = Value::MakeArray();
  for (const LayerSpec& l : c.layers) {
    types.Append(Value::String(l.mixer == MixerKind::kAttention ? "attention" : "mamba"));
  }
  root.Set("layer_types", std::move(types));
  MambaKeysToJson(c, root);  // mamba_proj_bias: ParseGraniteMoeHybrid refuses true
  root.Set("normalization_function", Value::String("rmsnorm"));
  root.Set("rms_norm_eps", FloatValue(c.rms_norm_eps));
  root.Set("position_embedding_type", Value::String(c.use_rope ? "rope" : "nope"));
  root.Set("rope_theta", FloatValue(c.rope_theta));
  root.Set("rope_scaling", Value());
}

void NemotronHToJson(const ModelConfig& c, json::Value& root) {
  using json::Value;
  root.Set("architectures", Architectures("NemotronHForCausalLM"));
  root.Set("model_type", Value::String("nemotron_h"));
  CommonToJson(c, root);
  std::string pattern;
  for (const LayerSpec& l : c.layers) {
    pattern += l.mixer == MixerKind::kMamba       ? 'M'
               : l.mixer == MixerKind::kAttention ? '*'
               : l.ffn == FfnKind::kMoe           ? 'E'
                                                  : '-';
  }
  root.Set("hybrid_override_pattern", Value::String(pattern));
  root.Set("attention_bias", Value::Bool(false));
  root.Set("attention_dropout", Value::Double(0.0));
  root.Set("hidden_dropout", Value::Double(0.0));
  root.Set("intermediate_size", Value::Int(c.intermediate_size));
  root.Set("mlp_hidden_act", Value::String("relu2"));
  root.Set("mlp_bias", Value::Bool(false));
  root.Set("use_bias", Value::Bool(false));
  root.Set("layer_norm_epsilon", FloatValue(c.rms_norm_eps));
  root.Set("residual_in_fp32", Value::Bool(false));
  root.Set("rescale_prenorm_residual", Value::Bool(true));
  root.Set("mamba_num_heads", Value::Int(c.mamba_n_heads));
  root.Set("mamba_head_dim", Value::Int(c.mamba_d_head));
  root.Set("mamba_hidden_act", Value::String("silu"));
  root.Set("mamba_proj_bias", Value::Bool(false));
  root.Set("n_groups", Value::Int(c.mamba_n_groups));
  root.Set("ssm_state_size", Value::Int(c.mamba_d_state));
  root.Set("conv_kernel", Value::Int(c.mamba_d_conv));
  root.Set("expand", Value::Int(c.mamba_expand));
  root.Set("chunk_size", Value::Int(c.mamba_chunk_size));
  root.Set("use_conv_bias", Value::Bool(c.mamba_conv_bias));
  root.Set("time_step_min", FloatValue(c.time_step_min_limit));
  root.Set("time_step_max", Value::Double(0.1));
  root.Set("time_step_floor", Value::Double(1e-4));
  Value lim = Value::MakeArray();
  lim.Append(Value::Double(0.0));
  lim.Append(Value::Double(std::numeric_limits<double>::infinity()));
  root.Set("time_step_limit", std::move(lim));
  root.Set("sliding_window", Value());
  root.Set("num_logits_to_keep", Value::Int(1));
  if (c.CountFfns(FfnKind::kMoe) > 0) {
    root.Set("n_routed_experts", Value::Int(c.num_experts));
    root.Set("num_experts_per_tok", Value::Int(c.num_experts_per_tok));
    root.Set("moe_intermediate_size", Value::Int(c.moe_intermediate_size));
    root.Set("moe_shared_expert_intermediate_size", Value::Int(c.moe_shared_intermediate_size));
    root.Set("n_shared_experts", Value::Int(1));
    root.Set("n_group", Value::Int(c.moe_n_group));
    root.Set("topk_group", Value::Int(c.moe_topk_group));
    root.Set("norm_topk_prob", Value::Bool(c.moe_norm_topk_prob));
    root.Set("routed_scaling_factor", FloatValue(c.moe_routed_scaling_factor));
    root.Set("moe_latent_size", Value());
  }
}

}  // namespace hc::model::internal
