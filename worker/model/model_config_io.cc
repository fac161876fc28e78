// config.json reading/writing: the shared key readers, the architecture
// dispatch, Bamba, and validation. Granite-4.0-H and Nemotron-H keys live in
// model_config_io_archs.cc.
#include "worker/model/model_config_io.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/status_macros.h"
#include "worker/model/config_json.h"

namespace hc::model {
namespace internal {

absl::Status KeyError(std::string_view key, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("config.json: \"", std::string(key), "\" ", std::string(what)));
}

absl::Status KeyUnsupported(std::string_view key, const json::Value& value, std::string_view why) {
  return absl::UnimplementedError(absl::StrCat("config.json: \"", std::string(key),
                                               "\" = ", json::Serialize(value),
                                               " is not supported (", std::string(why), ")"));
}

const json::Value* ConfigReader::Find(const char* key) const {
  const json::Value* v = root_.Find(key);
  return v == nullptr || v->is_null() ? nullptr : v;
}

absl::Status ConfigReader::Int(const char* key, bool required, int* out) const {
  const json::Value* v = Find(key);
  if (v == nullptr) return required ? KeyError(key, "is required") : absl::OkStatus();
  if (!v->is_int() || v->AsInt64() < INT32_MIN || v->AsInt64() > INT32_MAX) {
    return KeyError(key, "must be an integer");
  }
  *out = static_cast<int>(v->AsInt64());
  return absl::OkStatus();
}

absl::Status ConfigReader::Float(const char* key, float* out) const {
  const json::Value* v = Find(key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_number()) return KeyError(key, "must be a number");
  *out = static_cast<float>(v->AsDouble());
  return absl::OkStatus();
}

absl::Status ConfigReader::Bool(const char* key, bool* out) const {
  const json::Value* v = Find(key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_bool()) return KeyError(key, "must be true or false");
  *out = v->AsBool();
  return absl::OkStatus();
}

absl::Status ConfigReader::String(const char* key, std::string* out) const {
  const json::Value* v = Find(key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_string()) return KeyError(key, "must be a string");
  *out = v->AsString();
  return absl::OkStatus();
}

absl::Status ConfigReader::TokenId(const char* key, int* out) const {
  const json::Value* v = root_.Find(key);
  if (v == nullptr) return absl::OkStatus();
  if (v->is_null()) {
    *out = -1;
    return absl::OkStatus();
  }
  if (v->is_array() && !v->AsArray().empty()) v = &v->AsArray()[0];
  if (!v->is_int()) return KeyError(key, "must be an integer, a list of integers or null");
  *out = static_cast<int>(v->AsInt64());
  return absl::OkStatus();
}

absl::Status ConfigReader::RequireBool(const char* key, bool supported,
                                       std::string_view why) const {
  bool value = supported;
  HC_RETURN_IF_ERROR(Bool(key, &value));
  return value == supported ? absl::OkStatus() : KeyUnsupported(key, *Find(key), why);
}

absl::Status ConfigReader::RequireString(const char* key, std::string_view supported,
                                         std::string_view why) const {
  std::string value(supported);
  HC_RETURN_IF_ERROR(String(key, &value));
  return value == supported ? absl::OkStatus() : KeyUnsupported(key, *Find(key), why);
}

json::Value FloatValue(float f) {
  if (!std::isfinite(f)) return json::Value::Double(f);
  for (int precision = 1; precision <= 9; ++precision) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*g", precision, static_cast<double>(f));
    const double d = std::strtod(buf, nullptr);
    if (static_cast<float>(d) == f) return json::Value::Double(d);
  }
  return json::Value::Double(f);
}

absl::Status ReadVocabAndTokens(const ConfigReader& r, ModelConfig& c) {
  HC_RETURN_IF_ERROR(r.Int("vocab_size", true, &c.vocab_size));
  HC_RETURN_IF_ERROR(r.Bool("tie_word_embeddings", &c.tie_word_embeddings));
  HC_RETURN_IF_ERROR(r.TokenId("bos_token_id", &c.bos_token_id));
  HC_RETURN_IF_ERROR(r.TokenId("eos_token_id", &c.eos_token_id));
  HC_RETURN_IF_ERROR(r.TokenId("pad_token_id", &c.pad_token_id));
  return r.Int("max_position_embeddings", false, &c.max_position_embeddings);
}

absl::Status ReadAttentionHeads(const ConfigReader& r, ModelConfig& c) {
  HC_RETURN_IF_ERROR(r.Int("num_attention_heads", true, &c.num_attention_heads));
  HC_RETURN_IF_ERROR(r.Int("num_key_value_heads", false, &c.num_key_value_heads));
  if (r.Find("head_dim") != nullptr) return r.Int("head_dim", false, &c.head_dim);
  if (c.head_dim > 0) return absl::OkStatus();  // the architecture's default
  if (c.num_attention_heads <= 0) return KeyError("num_attention_heads", "must be positive");
  if (c.hidden_size % c.num_attention_heads != 0) {
    return KeyError("num_attention_heads", "must divide hidden_size when head_dim is not given");
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  return absl::OkStatus();
}

absl::Status ReadRope(const ConfigReader& r, ModelConfig& c) {
  HC_RETURN_IF_ERROR(r.Float("rope_theta", &c.rope_theta));
  if (const json::Value* rp = r.Find("rope_parameters"); rp != nullptr && rp->is_object()) {
    if (const json::Value* t = rp->Find("rope_type");
        t != nullptr && t->is_string() && t->AsString() != "default") {
      return KeyUnsupported("rope_parameters.rope_type", *t, "only default RoPE is implemented");
    }
    if (const json::Value* theta = rp->Find("rope_theta"); theta != nullptr && theta->is_number()) {
      c.rope_theta = static_cast<float>(theta->AsDouble());
    }
  }
  if (const json::Value* rs = r.Find("rope_scaling"); rs != nullptr) {
    return KeyUnsupported("rope_scaling", *rs, "scaled RoPE is not implemented");
  }
  return absl::OkStatus();
}

absl::Status ReadTimeStepLimit(const ConfigReader& r, const char* key, ModelConfig& c) {
  const json::Value* v = r.Find(key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_array() || v->AsArray().size() != 2 || !v->AsArray()[0].is_number() ||
      !v->AsArray()[1].is_number()) {
    return KeyError(key, "must be a list of two numbers");
  }
  c.time_step_min_limit = static_cast<float>(v->AsArray()[0].AsDouble());
  c.time_step_max_limit = static_cast<float>(v->AsArray()[1].AsDouble());
  return absl::OkStatus();
}

absl::Status ReadMambaHeadDim(const ConfigReader& r, ModelConfig& c) {
  // mamba_d_head: an integer or "auto" (= mamba_expand * hidden_size / mamba_n_heads).
  if (const json::Value* v = r.Find("mamba_d_head");
      v != nullptr && !(v->is_string() && v->AsString() == "auto")) {
    if (!v->is_int()) return KeyError("mamba_d_head", "must be an integer or \"auto\"");
    c.mamba_d_head = static_cast<int>(v->AsInt64());
    return absl::OkStatus();
  }
  if (c.mamba_n_heads <= 0) return KeyError("mamba_n_heads", "must be positive");
  c.mamba_d_head = c.mamba_expand * c.hidden_size / c.mamba_n_heads;
  return absl::OkStatus();
}

// The Bamba-style mamba_* keys (Bamba and Granite-4.0-H spell them alike).
void MambaKeysToJson(const ModelConfig& c, json::Value& root) {
  using json::Value;
  root.Set("mamba_n_heads", Value::Int(c.mamba_n_heads));
  root.Set("mamba_d_head", Value::Int(c.mamba_d_head));
  root.Set("mamba_n_groups", Value::Int(c.mamba_n_groups));
  root.Set("mamba_d_state", Value::Int(c.mamba_d_state));
  root.Set("mamba_d_conv", Value::Int(c.mamba_d_conv));
  root.Set("mamba_expand", Value::Int(c.mamba_expand));
  root.Set("mamba_chunk_size", Value::Int(c.mamba_chunk_size));
  root.Set("mamba_conv_bias", Value::Bool(c.mamba_conv_bias));
  root.Set("mamba_proj_bias", Value::Bool(c.mamba_proj_bias));
  if (c.time_step_min_limit != 0.0f || !std::isinf(c.time_step_max_limit)) {
    Value lim = Value::MakeArray();
    lim.Append(FloatValue(c.time_step_min_limit));
    lim.Append(FloatValue(c.time_step_max_limit));
    root.Set("time_step_limit", std::move(lim));
  }
}

void CommonToJson(const ModelConfig& c, json::Value& root, bool write_head_dim) {
  using json::Value;
  root.Set("vocab_size", Value::Int(c.vocab_size));
  root.Set("tie_word_embeddings", Value::Bool(c.tie_word_embeddings));
  root.Set("hidden_size", Value::Int(c.hidden_size));
  root.Set("num_hidden_layers", Value::Int(c.num_hidden_layers));
  root.Set("num_attention_heads", Value::Int(c.num_attention_heads));
  root.Set("num_key_value_heads", Value::Int(c.num_key_value_heads));
  if (write_head_dim) root.Set("head_dim", Value::Int(c.head_dim));
  root.Set("max_position_embeddings", Value::Int(c.max_position_embeddings));
  root.Set("bos_token_id", c.bos_token_id >= 0 ? Value::Int(c.bos_token_id) : Value());
  root.Set("eos_token_id", c.eos_token_id >= 0 ? Value::Int(c.eos_token_id) : Value());
  root.Set("pad_token_id", c.pad_token_id >= 0 ? Value::Int(c.pad_token_id) : Value());
  root.Set("initializer_range", Value::Double(0.02));
  root.Set("use_cache", Value::Bool(true));
  root.Set("torch_dtype", Value::String("float32"));
}

}  // namespace internal

namespace {

using internal::ConfigReader;
using internal::KeyError;

// Bamba's keys over BambaConfig's defaults.
absl::Status ParseBamba(const ConfigReader& r, ModelConfig& c) {
  c.num_key_value_heads = 8;
  c.partial_rotary_factor = 0.5f;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.pad_token_id = 0;
  c.max_position_embeddings = 262144;
  HC_RETURN_IF_ERROR(r.Int("hidden_size", true, &c.hidden_size));
  HC_RETURN_IF_ERROR(r.Int("intermediate_size", true, &c.intermediate_size));
  HC_RETURN_IF_ERROR(r.Int("num_hidden_layers", true, &c.num_hidden_layers));
  HC_RETURN_IF_ERROR(r.Int("mamba_n_heads", true, &c.mamba_n_heads));
  HC_RETURN_IF_ERROR(r.Int("mamba_n_groups", false, &c.mamba_n_groups));
  HC_RETURN_IF_ERROR(r.Int("mamba_d_state", true, &c.mamba_d_state));
  HC_RETURN_IF_ERROR(r.Int("mamba_d_conv", false, &c.mamba_d_conv));
  HC_RETURN_IF_ERROR(r.Int("mamba_expand", false, &c.mamba_expand));
  HC_RETURN_IF_ERROR(r.Int("mamba_chunk_size", false, &c.mamba_chunk_size));
  HC_RETURN_IF_ERROR(r.Bool("mamba_conv_bias", &c.mamba_conv_bias));
  HC_RETURN_IF_ERROR(r.Bool("mamba_proj_bias", &c.mamba_proj_bias));
  HC_RETURN_IF_ERROR(r.Float("rms_norm_eps", &c.rms_norm_eps));
  HC_RETURN_IF_ERROR(internal::ReadVocabAndTokens(r, c));
  HC_RETURN_IF_ERROR(internal::ReadMambaHeadDim(r, c));
  HC_RETURN_IF_ERROR(internal::ReadAttentionHeads(r, c));
  // Rotary: partial_rotary_factor, else attn_rotary_emb (the rotary dim).
  if (r.Find("partial_rotary_factor") != nullptr) {
    HC_RETURN_IF_ERROR(r.Float("partial_rotary_factor", &c.partial_rotary_factor));
  } else if (const json::Value* d = r.Find("attn_rotary_emb"); d != nullptr) {
    if (!d->is_int() || d->AsInt64() <= 0) {
      return KeyError("attn_rotary_emb", "must be a positive integer");
    }
    if (c.head_dim <= 0) return KeyError("head_dim", "must be positive");
    c.partial_rotary_factor = static_cast<float>(d->AsInt64()) / static_cast<float>(c.head_dim);
  }
  HC_RETURN_IF_ERROR(internal::ReadRope(r, c));
  HC_RETURN_IF_ERROR(internal::ReadTimeStepLimit(r, "time_step_limit", c));
  HC_RETURN_IF_ERROR(r.RequireString("hidden_act", "silu", "only silu is implemented"));
  HC_RETURN_IF_ERROR(r.RequireBool("attention_bias", false, "q/k/v/o projection biases"));
  HC_RETURN_IF_ERROR(r.RequireBool("mlp_bias", false, "MLP projection biases"));

  std::vector<int> attn;
  if (const json::Value* v = r.Find("attn_layer_indices"); v != nullptr) {
    if (!v->is_array()) return KeyError("attn_layer_indices", "must be a list of integers");
    std::set<int> seen;
    for (const json::Value& i : v->AsArray()) {
      if (!i.is_int()) return KeyError("attn_layer_indices", "must be a list of integers");
      const int layer = static_cast<int>(i.AsInt64());
      if (layer < 0 || layer >= c.num_hidden_layers) {
        return KeyError("attn_layer_indices", absl::StrCat("entry ", layer, " is outside [0, ",
                                                           c.num_hidden_layers, ")"));
      }
      if (!seen.insert(layer).second) {
        return KeyError("attn_layer_indices", absl::StrCat("lists layer ", layer, " twice"));
      }
      attn.push_back(layer);
    }
  }
  c.SetMixerLayers(c.num_hidden_layers, attn, FfnKind::kMlp);
  return absl::OkStatus();
}

absl::StatusOr<Architecture> ReadArchitecture(const ConfigReader& r) {
  const json::Value* type = r.Find("model_type");
  if (type == nullptr || !type->is_string()) {
    return KeyError("model_type", "is required (a string: bamba, granitemoehybrid or nemotron_h)");
  }
  struct Known {
    Architecture arch;
    const char* model_type;
    const char* class_name;
  };
  static constexpr Known kKnown[] = {
      {Architecture::kBamba, "bamba", "BambaForCausalLM"},
      {Architecture::kGraniteMoeHybrid, "granitemoehybrid", "GraniteMoeHybridForCausalLM"},
      {Architecture::kNemotronH, "nemotron_h", "NemotronHForCausalLM"},
  };
  for (const Known& k : kKnown) {
    if (type->AsString() != k.model_type) continue;
    if (const json::Value* archs = r.Find("architectures"); archs != nullptr) {
      if (!archs->is_array()) return KeyError("architectures", "must be a list of strings");
      for (const json::Value& a : archs->AsArray()) {
        if (!a.is_string() || a.AsString() != k.class_name) {
          return internal::KeyUnsupported(
              "architectures", *archs,
              absl::StrCat("model_type \"", k.model_type, "\" serves only ", k.class_name));
        }
      }
    }
    return k.arch;
  }
  return internal::KeyUnsupported("model_type", *type,
                                  "supported: bamba, granitemoehybrid, nemotron_h");
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text) {
  json::ParseOptions popt;
  popt.allow_nan_infinity = true;
  auto parsed = json::Parse(json_text, popt);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: ", parsed.status().message()));
  }
  if (!parsed->is_object()) return absl::InvalidArgumentError("config.json: not a JSON object");
  const ConfigReader r(*parsed);
  ModelConfig c;
  HC_ASSIGN_OR_RETURN(c.architecture, ReadArchitecture(r));
  switch (c.architecture) {
    case Architecture::kBamba:
      HC_RETURN_IF_ERROR(ParseBamba(r, c));
      break;
    case Architecture::kGraniteMoeHybrid:
      HC_RETURN_IF_ERROR(internal::ParseGraniteMoeHybrid(r, c));
      break;
    case Architecture::kNemotronH:
      HC_RETURN_IF_ERROR(internal::ParseNemotronH(r, c));
      break;
  }
  HC_RETURN_IF_ERROR(ValidateModelConfig(c));
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  std::error_code ec;
  const std::string file = std::filesystem::is_directory(path, ec) ? path + "/config.json" : path;
  HC_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(file));
  auto config = ParseModelConfig(text);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(file, ": ", config.status().message()));
  }
  return config;
}

namespace {

absl::Status ValidateMamba(const ModelConfig& c) {
  auto positive = [](const char* key, int v) {
    return v > 0 ? absl::OkStatus() : KeyError(key, absl::StrCat("must be positive, got ", v));
  };
  const bool hf_names = c.architecture != Architecture::kNemotronH;
  HC_RETURN_IF_ERROR(positive(hf_names ? "mamba_n_heads" : "mamba_num_heads", c.mamba_n_heads));
  HC_RETURN_IF_ERROR(positive(hf_names ? "mamba_d_head" : "mamba_head_dim", c.mamba_d_head));
  HC_RETURN_IF_ERROR(positive(hf_names ? "mamba_n_groups" : "n_groups", c.mamba_n_groups));
  HC_RETURN_IF_ERROR(positive(hf_names ? "mamba_d_state" : "ssm_state_size", c.mamba_d_state));
  HC_RETURN_IF_ERROR(positive(hf_names ? "mamba_d_conv" : "conv_kernel", c.mamba_d_conv));
  HC_RETURN_IF_ERROR(positive(hf_names ? "mamba_expand" : "expand", c.mamba_expand));
  HC_RETURN_IF_ERROR(positive(hf_names ? "mamba_chunk_size" : "chunk_size", c.mamba_chunk_size));
  if (hf_names && c.mamba_n_heads * c.mamba_d_head != c.mamba_expand * c.hidden_size) {
    return KeyError(
        "mamba_d_head",
        absl::StrCat("times mamba_n_heads (", c.mamba_n_heads, " * ", c.mamba_d_head,
                     ") must equal mamba_expand * hidden_size = ", c.mamba_expand * c.hidden_size));
  }
  if (c.mamba_n_heads % c.mamba_n_groups != 0) {
    return KeyError(hf_names ? "mamba_n_groups" : "n_groups",
                    absl::StrCat("(", c.mamba_n_groups, ") must divide the Mamba heads (",
                                 c.mamba_n_heads, ")"));
  }
  if (!(c.time_step_min_limit >= 0.0f && c.time_step_min_limit <= c.time_step_max_limit)) {
    return KeyError(hf_names ? "time_step_limit" : "time_step_min", "must satisfy 0 <= min <= max");
  }
  return absl::OkStatus();
}

absl::Status ValidateAttention(const ModelConfig& c) {
  auto positive = [](const char* key, int v) {
    return v > 0 ? absl::OkStatus() : KeyError(key, absl::StrCat("must be positive, got ", v));
  };
  HC_RETURN_IF_ERROR(positive("num_attention_heads", c.num_attention_heads));
  HC_RETURN_IF_ERROR(positive("num_key_value_heads", c.num_key_value_heads));
  HC_RETURN_IF_ERROR(positive("head_dim", c.head_dim));
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return KeyError("num_key_value_heads",
                    absl::StrCat("(", c.num_key_value_heads, ") must divide num_attention_heads (",
                                 c.num_attention_heads, ")"));
  }
  if (c.attention_multiplier < 0.0f || !std::isfinite(c.attention_multiplier)) {
    return KeyError("attention_multiplier", "must be a positive number");
  }
  if (!c.use_rope) return absl::OkStatus();
  if (!(c.partial_rotary_factor > 0.0f && c.partial_rotary_factor <= 1.0f)) {
    return KeyError("partial_rotary_factor", "must be in (0, 1]");
  }
  const float rot = c.head_dim * c.partial_rotary_factor;
  if (std::fabs(rot - std::round(rot)) > 1e-4f || c.rotary_dim() % 2 != 0 || c.rotary_dim() <= 0) {
    return KeyError("partial_rotary_factor",
                    absl::StrCat("gives rotary dim ", rot, " for head_dim ", c.head_dim,
                                 "; it must be a positive even integer"));
  }
  if (!(c.rope_theta > 0.0f)) return KeyError("rope_theta", "must be positive");
  return absl::OkStatus();
}

absl::Status ValidateMoe(const ModelConfig& c) {
  const bool granite = c.architecture == Architecture::kGraniteMoeHybrid;
  const char* experts_key = granite ? "num_local_experts" : "n_routed_experts";
  if (c.num_experts <= 0) return KeyError(experts_key, "must be positive for MoE layers");
  if (c.num_experts_per_tok <= 0 || c.num_experts_per_tok > c.num_experts) {
    return KeyError("num_experts_per_tok",
                    absl::StrCat("(", c.num_experts_per_tok, ") must be in [1, ", experts_key,
                                 " = ", c.num_experts, "]"));
  }
  if (c.moe_intermediate_size <= 0) {
    return KeyError(granite ? "intermediate_size" : "moe_intermediate_size", "must be positive");
  }
  if (c.moe_shared_intermediate_size <= 0) {
    return KeyError(granite ? "shared_intermediate_size" : "moe_shared_expert_intermediate_size",
                    "must be positive");
  }
  if (c.moe_router == MoeRouter::kSigmoidGroupTopK) {
    if (c.moe_n_group <= 0 || c.num_experts % c.moe_n_group != 0 ||
        c.num_experts / c.moe_n_group < 2) {
      return KeyError("n_group",
                      absl::StrCat("(", c.moe_n_group, ") must divide ", experts_key, " (",
                                   c.num_experts, ") into groups of at least 2 experts"));
    }
    if (c.moe_topk_group <= 0 || c.moe_topk_group > c.moe_n_group ||
        c.moe_topk_group * (c.num_experts / c.moe_n_group) < c.num_experts_per_tok) {
      return KeyError("topk_group", absl::StrCat("(", c.moe_topk_group,
                                                 ") must be in [1, n_group] and keep at "
                                                 "least num_experts_per_tok experts"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateModelConfig(const ModelConfig& c) {
  auto positive = [](const char* key, int v) {
    return v > 0 ? absl::OkStatus() : KeyError(key, absl::StrCat("must be positive, got ", v));
  };
  HC_RETURN_IF_ERROR(positive("hidden_size", c.hidden_size));
  HC_RETURN_IF_ERROR(positive("num_hidden_layers", c.num_hidden_layers));
  HC_RETURN_IF_ERROR(positive("vocab_size", c.vocab_size));
  HC_RETURN_IF_ERROR(positive("max_position_embeddings", c.max_position_embeddings));
  if (static_cast<int>(c.layers.size()) != c.num_hidden_layers) {
    return KeyError("num_hidden_layers",
                    absl::StrCat("(", c.num_hidden_layers, ") does not match the ", c.layers.size(),
                                 " layers of the layer list"));
  }
  if (c.num_mamba_layers() > 0 || c.architecture == Architecture::kBamba) {
    HC_RETURN_IF_ERROR(ValidateMamba(c));
  }
  if (c.num_attention_layers() > 0 || c.architecture == Architecture::kBamba) {
    HC_RETURN_IF_ERROR(ValidateAttention(c));
  }
  if (c.CountFfns(FfnKind::kMlp) > 0 || c.architecture == Architecture::kBamba) {
    HC_RETURN_IF_ERROR(positive(c.architecture == Architecture::kGraniteMoeHybrid
                                    ? "shared_intermediate_size"
                                    : "intermediate_size",
                                c.intermediate_size));
  }
  if (c.CountFfns(FfnKind::kMoe) > 0) HC_RETURN_IF_ERROR(ValidateMoe(c));
  if (!(c.rms_norm_eps > 0.0f)) {
    return KeyError(
        c.architecture == Architecture::kNemotronH ? "layer_norm_epsilon" : "rms_norm_eps",
        "must be positive");
  }
  for (const auto& [key, v] :
       {std::pair<const char*, float>{"embedding_multiplier", c.embedding_multiplier},
        {"residual_multiplier", c.residual_multiplier},
        {"logits_scaling", c.logits_scaling}}) {
    if (!std::isfinite(v) || v == 0.0f) return KeyError(key, "must be a finite non-zero number");
  }
  for (const auto& [key, id] : {std::pair<const char*, int>{"bos_token_id", c.bos_token_id},
                                {"eos_token_id", c.eos_token_id},
                                {"pad_token_id", c.pad_token_id}}) {
    if (id < -1 || id >= c.vocab_size) {
      return KeyError(key,
                      absl::StrCat("(", id, ") is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

std::string ModelConfigToJson(const ModelConfig& c) {
  using internal::FloatValue;
  using json::Value;
  Value root = Value::MakeObject();
  switch (c.architecture) {
    case Architecture::kGraniteMoeHybrid:
      internal::GraniteMoeHybridToJson(c, root);
      return json::Serialize(root, {.indent = 2, .allow_nan_infinity = true}) + "\n";
    case Architecture::kNemotronH:
      internal::NemotronHToJson(c, root);
      return json::Serialize(root, {.indent = 2, .allow_nan_infinity = true}) + "\n";
    case Architecture::kBamba:
      break;
  }
  Value arch = Value::MakeArray();
  arch.Append(Value::String("BambaForCausalLM"));
  root.Set("architectures", std::move(arch));
  root.Set("model_type", Value::String("bamba"));
  internal::CommonToJson(c, root);
  root.Set("intermediate_size", Value::Int(c.intermediate_size));
  Value attn = Value::MakeArray();
  for (int i : c.AttentionLayerIndices()) attn.Append(Value::Int(i));
  root.Set("attn_layer_indices", std::move(attn));
  root.Set("hidden_act", Value::String("silu"));
  root.Set("attention_dropout", Value::Double(0.0));
  internal::MambaKeysToJson(c, root);
  root.Set("rms_norm_eps", FloatValue(c.rms_norm_eps));
  root.Set("rope_theta", FloatValue(c.rope_theta));
  root.Set("partial_rotary_factor", FloatValue(c.partial_rotary_factor));
  root.Set("attn_rotary_emb", Value::Int(c.rotary_dim()));
  return json::Serialize(root, {.indent = 2, .allow_nan_infinity = true}) + "\n";
}

}  // namespace hc::model
