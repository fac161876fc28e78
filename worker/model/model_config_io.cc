#include "worker/model/model_config_io.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/status_macros.h"

namespace hc::model {
namespace {

absl::Status KeyError(std::string_view key, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("config.json: \"", std::string(key), "\" ", std::string(what)));
}

class Reader {
 public:
  explicit Reader(const json::Value& root) : root_(root) {}

  // Sets *out when the key is present (and not null); required keys must be.
  absl::Status Int(const char* key, bool required, int* out) {
    const json::Value* v = root_.Find(key);
    if (v == nullptr || v->is_null()) {
      return required ? KeyError(key, "is required") : absl::OkStatus();
    }
    if (!v->is_int() || v->AsInt64() < INT32_MIN || v->AsInt64() > INT32_MAX) {
      return KeyError(key, "must be an integer");
    }
    *out = static_cast<int>(v->AsInt64());
    return absl::OkStatus();
  }
  absl::Status Float(const char* key, float* out) {
    const json::Value* v = root_.Find(key);
    if (v == nullptr || v->is_null()) return absl::OkStatus();
    if (!v->is_number()) return KeyError(key, "must be a number");
    *out = static_cast<float>(v->AsDouble());
    return absl::OkStatus();
  }
  absl::Status Bool(const char* key, bool* out) {
    const json::Value* v = root_.Find(key);
    if (v == nullptr || v->is_null()) return absl::OkStatus();
    if (!v->is_bool()) return KeyError(key, "must be true or false");
    *out = v->AsBool();
    return absl::OkStatus();
  }
  // Token ids: an int, null (-1), or a list (first element).
  absl::Status TokenId(const char* key, int* out) {
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

 private:
  const json::Value& root_;
};

// The double whose shortest decimal form reads back as `f` (1e-5f -> 1e-05,
// not 9.99999974737875e-06).
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

}  // namespace

namespace {

// The parsed root object, once it is known to describe a Bamba model.
absl::StatusOr<json::Value> ParseBambaRoot(std::string_view json_text) {
  json::ParseOptions popt;
  popt.allow_nan_infinity = true;
  auto parsed = json::Parse(json_text, popt);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: ", parsed.status().message()));
  }
  const json::Value& root = *parsed;
  if (!root.is_object()) return absl::InvalidArgumentError("config.json: not a JSON object");
  const json::Value* type = root.Find("model_type");
  if (type == nullptr || !type->is_string() || type->AsString() != "bamba") {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: \"model_type\" must be \"bamba\" (BambaForCausalLM), got ",
                     type == nullptr ? "nothing" : json::Serialize(*type)));
  }
  return parsed;
}

// The plain keys, read over Bamba's defaults.
absl::Status ReadScalars(const json::Value& root, ModelConfig& c) {
  c.num_key_value_heads = 8;
  c.partial_rotary_factor = 0.5f;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.pad_token_id = 0;
  c.max_position_embeddings = 262144;
  Reader r(root);
  HC_RETURN_IF_ERROR(r.Int("hidden_size", true, &c.hidden_size));
  HC_RETURN_IF_ERROR(r.Int("intermediate_size", true, &c.intermediate_size));
  HC_RETURN_IF_ERROR(r.Int("num_hidden_layers", true, &c.num_hidden_layers));
  HC_RETURN_IF_ERROR(r.Int("num_attention_heads", true, &c.num_attention_heads));
  HC_RETURN_IF_ERROR(r.Int("num_key_value_heads", false, &c.num_key_value_heads));
  HC_RETURN_IF_ERROR(r.Int("mamba_n_heads", true, &c.mamba_n_heads));
  HC_RETURN_IF_ERROR(r.Int("mamba_n_groups", false, &c.mamba_n_groups));
  HC_RETURN_IF_ERROR(r.Int("mamba_d_state", true, &c.mamba_d_state));
  HC_RETURN_IF_ERROR(r.Int("mamba_d_conv", false, &c.mamba_d_conv));
  HC_RETURN_IF_ERROR(r.Int("mamba_expand", false, &c.mamba_expand));
  HC_RETURN_IF_ERROR(r.Int("mamba_chunk_size", false, &c.mamba_chunk_size));
  HC_RETURN_IF_ERROR(r.Bool("mamba_conv_bias", &c.mamba_conv_bias));
  HC_RETURN_IF_ERROR(r.Bool("mamba_proj_bias", &c.mamba_proj_bias));
  HC_RETURN_IF_ERROR(r.Float("rms_norm_eps", &c.rms_norm_eps));
  HC_RETURN_IF_ERROR(r.Int("vocab_size", true, &c.vocab_size));
  HC_RETURN_IF_ERROR(r.Bool("tie_word_embeddings", &c.tie_word_embeddings));
  HC_RETURN_IF_ERROR(r.TokenId("bos_token_id", &c.bos_token_id));
  HC_RETURN_IF_ERROR(r.TokenId("eos_token_id", &c.eos_token_id));
  HC_RETURN_IF_ERROR(r.TokenId("pad_token_id", &c.pad_token_id));
  return r.Int("max_position_embeddings", false, &c.max_position_embeddings);
}

// mamba_d_head, head_dim and the rotary fraction: given, or derived from the
// scalars (so ReadScalars runs first).
absl::Status ReadHeadDims(const json::Value& root, ModelConfig& c) {
  Reader r(root);
  // mamba_d_head: an integer or "auto".
  if (const json::Value* v = root.Find("mamba_d_head");
      v != nullptr && !v->is_null() && !(v->is_string() && v->AsString() == "auto")) {
    if (!v->is_int()) return KeyError("mamba_d_head", "must be an integer or \"auto\"");
    c.mamba_d_head = static_cast<int>(v->AsInt64());
  } else {
    if (c.mamba_n_heads <= 0) return KeyError("mamba_n_heads", "must be positive");
    c.mamba_d_head = c.d_inner() / c.mamba_n_heads;
  }

  // head_dim defaults to hidden / heads.
  if (const json::Value* v = root.Find("head_dim"); v != nullptr && !v->is_null()) {
    HC_RETURN_IF_ERROR(r.Int("head_dim", false, &c.head_dim));
  } else {
    if (c.num_attention_heads <= 0) return KeyError("num_attention_heads", "must be positive");
    if (c.hidden_size % c.num_attention_heads != 0) {
      return KeyError("num_attention_heads", "must divide hidden_size when head_dim is not given");
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }

  // Rotary: partial_rotary_factor, else attn_rotary_emb (the rotary dim).
  if (const json::Value* v = root.Find("partial_rotary_factor"); v != nullptr && !v->is_null()) {
    HC_RETURN_IF_ERROR(r.Float("partial_rotary_factor", &c.partial_rotary_factor));
  } else if (const json::Value* d = root.Find("attn_rotary_emb"); d != nullptr && !d->is_null()) {
    if (!d->is_int() || d->AsInt64() <= 0)
      return KeyError("attn_rotary_emb", "must be a positive integer");
    if (c.head_dim <= 0) return KeyError("head_dim", "must be positive");
    c.partial_rotary_factor = static_cast<float>(d->AsInt64()) / static_cast<float>(c.head_dim);
  }
  return absl::OkStatus();
}

// rope_theta at top level or inside rope_parameters (transformers >= 5);
// scaled rope is refused.
absl::Status ReadRope(const json::Value& root, ModelConfig& c) {
  HC_RETURN_IF_ERROR(Reader(root).Float("rope_theta", &c.rope_theta));
  if (const json::Value* rp = root.Find("rope_parameters"); rp != nullptr && rp->is_object()) {
    if (const json::Value* t = rp->Find("rope_type");
        t != nullptr && t->is_string() && t->AsString() != "default") {
      return KeyError("rope_parameters", absl::StrCat("rope_type \"", t->AsString(),
                                                      "\" is not supported (only default)"));
    }
    if (const json::Value* theta = rp->Find("rope_theta"); theta != nullptr && theta->is_number()) {
      c.rope_theta = static_cast<float>(theta->AsDouble());
    }
  }
  if (const json::Value* rs = root.Find("rope_scaling"); rs != nullptr && !rs->is_null()) {
    return KeyError("rope_scaling", "is not supported");
  }
  return absl::OkStatus();
}

// The list-valued keys: attn_layer_indices and time_step_limit.
absl::Status ReadLists(const json::Value& root, ModelConfig& c) {
  if (const json::Value* v = root.Find("attn_layer_indices"); v != nullptr && !v->is_null()) {
    if (!v->is_array()) return KeyError("attn_layer_indices", "must be a list of integers");
    for (const json::Value& i : v->AsArray()) {
      if (!i.is_int()) return KeyError("attn_layer_indices", "must be a list of integers");
      c.attn_layer_indices.push_back(static_cast<int>(i.AsInt64()));
    }
    std::sort(c.attn_layer_indices.begin(), c.attn_layer_indices.end());
  }

  if (const json::Value* v = root.Find("time_step_limit"); v != nullptr && !v->is_null()) {
    if (!v->is_array() || v->AsArray().size() != 2 || !v->AsArray()[0].is_number() ||
        !v->AsArray()[1].is_number()) {
      return KeyError("time_step_limit", "must be a list of two numbers");
    }
    c.time_step_min_limit = static_cast<float>(v->AsArray()[0].AsDouble());
    c.time_step_max_limit = static_cast<float>(v->AsArray()[1].AsDouble());
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text) {
  HC_ASSIGN_OR_RETURN(const json::Value root, ParseBambaRoot(json_text));
  ModelConfig c;
  HC_RETURN_IF_ERROR(ReadScalars(root, c));
  HC_RETURN_IF_ERROR(ReadHeadDims(root, c));
  HC_RETURN_IF_ERROR(ReadRope(root, c));
  HC_RETURN_IF_ERROR(ReadLists(root, c));
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

absl::Status ValidateModelConfig(const ModelConfig& c) {
  auto positive = [](const char* key, int v) {
    return v > 0 ? absl::OkStatus() : KeyError(key, absl::StrCat("must be positive, got ", v));
  };
  HC_RETURN_IF_ERROR(positive("hidden_size", c.hidden_size));
  HC_RETURN_IF_ERROR(positive("intermediate_size", c.intermediate_size));
  HC_RETURN_IF_ERROR(positive("num_hidden_layers", c.num_hidden_layers));
  HC_RETURN_IF_ERROR(positive("num_attention_heads", c.num_attention_heads));
  HC_RETURN_IF_ERROR(positive("num_key_value_heads", c.num_key_value_heads));
  HC_RETURN_IF_ERROR(positive("head_dim", c.head_dim));
  HC_RETURN_IF_ERROR(positive("mamba_n_heads", c.mamba_n_heads));
  HC_RETURN_IF_ERROR(positive("mamba_d_head", c.mamba_d_head));
  HC_RETURN_IF_ERROR(positive("mamba_n_groups", c.mamba_n_groups));
  HC_RETURN_IF_ERROR(positive("mamba_d_state", c.mamba_d_state));
  HC_RETURN_IF_ERROR(positive("mamba_d_conv", c.mamba_d_conv));
  HC_RETURN_IF_ERROR(positive("mamba_expand", c.mamba_expand));
  HC_RETURN_IF_ERROR(positive("mamba_chunk_size", c.mamba_chunk_size));
  HC_RETURN_IF_ERROR(positive("vocab_size", c.vocab_size));
  HC_RETURN_IF_ERROR(positive("max_position_embeddings", c.max_position_embeddings));
  if (c.mamba_n_heads * c.mamba_d_head != c.d_inner()) {
    return KeyError("mamba_d_head",
                    absl::StrCat("times mamba_n_heads (", c.mamba_n_heads, " * ", c.mamba_d_head,
                                 ") must equal mamba_expand * hidden_size = ", c.d_inner()));
  }
  if (c.mamba_n_heads % c.mamba_n_groups != 0) {
    return KeyError(
        "mamba_n_groups",
        absl::StrCat("(", c.mamba_n_groups, ") must divide mamba_n_heads (", c.mamba_n_heads, ")"));
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return KeyError("num_key_value_heads",
                    absl::StrCat("(", c.num_key_value_heads, ") must divide num_attention_heads (",
                                 c.num_attention_heads, ")"));
  }
  std::set<int> seen;
  for (int i : c.attn_layer_indices) {
    if (i < 0 || i >= c.num_hidden_layers) {
      return KeyError("attn_layer_indices",
                      absl::StrCat("entry ", i, " is outside [0, ", c.num_hidden_layers, ")"));
    }
    if (!seen.insert(i).second) {
      return KeyError("attn_layer_indices", absl::StrCat("lists layer ", i, " twice"));
    }
  }
  if (!(c.partial_rotary_factor > 0.0f && c.partial_rotary_factor <= 1.0f)) {
    return KeyError("partial_rotary_factor", "must be in (0, 1]");
  }
  const float rot = c.head_dim * c.partial_rotary_factor;
  if (std::fabs(rot - std::round(rot)) > 1e-4f || c.rotary_dim() % 2 != 0 || c.rotary_dim() <= 0) {
    return KeyError("partial_rotary_factor",
                    absl::StrCat("gives rotary dim ", rot, " for head_dim ", c.head_dim,
                                 "; it must be a positive even integer"));
  }
  if (!(c.rms_norm_eps > 0.0f)) return KeyError("rms_norm_eps", "must be positive");
  if (!(c.rope_theta > 0.0f)) return KeyError("rope_theta", "must be positive");
  if (!(c.time_step_min_limit >= 0.0f && c.time_step_min_limit <= c.time_step_max_limit)) {
    return KeyError("time_step_limit", "must satisfy 0 <= min <= max");
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
  using json::Value;
  Value root = Value::MakeObject();
  Value arch = Value::MakeArray();
  arch.Append(Value::String("BambaForCausalLM"));
  root.Set("architectures", std::move(arch));
  root.Set("model_type", Value::String("bamba"));
  root.Set("vocab_size", Value::Int(c.vocab_size));
  root.Set("tie_word_embeddings", Value::Bool(c.tie_word_embeddings));
  root.Set("hidden_size", Value::Int(c.hidden_size));
  root.Set("intermediate_size", Value::Int(c.intermediate_size));
  root.Set("num_hidden_layers", Value::Int(c.num_hidden_layers));
  Value attn = Value::MakeArray();
  for (int i : c.attn_layer_indices) attn.Append(Value::Int(i));
  root.Set("attn_layer_indices", std::move(attn));
  root.Set("num_attention_heads", Value::Int(c.num_attention_heads));
  root.Set("num_key_value_heads", Value::Int(c.num_key_value_heads));
  root.Set("head_dim", Value::Int(c.head_dim));
  root.Set("hidden_act", Value::String("silu"));
  root.Set("attention_dropout", Value::Double(0.0));
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
  root.Set("rms_norm_eps", FloatValue(c.rms_norm_eps));
  root.Set("rope_theta", FloatValue(c.rope_theta));
  root.Set("partial_rotary_factor", FloatValue(c.partial_rotary_factor));
  root.Set("attn_rotary_emb", Value::Int(c.rotary_dim()));
  root.Set("max_position_embeddings", Value::Int(c.max_position_embeddings));
  root.Set("bos_token_id", c.bos_token_id >= 0 ? Value::Int(c.bos_token_id) : Value());
  root.Set("eos_token_id", c.eos_token_id >= 0 ? Value::Int(c.eos_token_id) : Value());
  root.Set("pad_token_id", c.pad_token_id >= 0 ? Value::Int(c.pad_token_id) : Value());
  root.Set("initializer_range", Value::Double(0.02));
  root.Set("use_cache", Value::Bool(true));
  root.Set("torch_dtype", Value::String("float32"));
  return json::Serialize(root, {.indent = 2}) + "\n";
}

}  // namespace hc::model
