#include "worker/model/scaled_checkpoint.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/status_macros.h"
#include "common/text/synthetic_tokenizer.h"
#include "kernels/dtype.h"
#include "worker/model/model_config_io.h"
#include "worker/model/synthetic_checkpoint.h"

namespace hc::model {
namespace {

using json::Value;

bool Present(const Value& root, const char* key) {
  const Value* v = root.Find(key);
  return v != nullptr && !v->is_null();
}

// The first of `keys` the file has (transformers' aliases), else the first.
const char* KeyOf(const Value& root, std::initializer_list<const char*> keys) {
  for (const char* k : keys) {
    if (Present(root, k)) return k;
  }
  return *keys.begin();
}

// Keeps the first `n` layers of the layer list the file states.
void TruncateLayers(const ModelConfig& real, int n, Value& root) {
  if (n >= real.num_hidden_layers) return;
  if (Present(root, "num_hidden_layers")) root.Set("num_hidden_layers", Value::Int(n));
  for (const char* key : {"layer_types", "layers_block_type"}) {
    if (!Present(root, key) || !root.Find(key)->is_array()) continue;
    Value::Array kept(root.Find(key)->AsArray().begin(), root.Find(key)->AsArray().begin() + n);
    root.Set(key, Value::MakeArray(std::move(kept)));
  }
  if (Present(root, "hybrid_override_pattern") &&
      root.Find("hybrid_override_pattern")->is_string()) {
    root.Set("hybrid_override_pattern",
             Value::String(root.Find("hybrid_override_pattern")->AsString().substr(0, n)));
  }
  if (Present(root, "attn_layer_indices") && root.Find("attn_layer_indices")->is_array()) {
    Value kept = Value::MakeArray();
    for (const Value& i : root.Find("attn_layer_indices")->AsArray()) {
      if (i.is_int() && i.AsInt64() < n) kept.Append(i);
    }
    root.Set("attn_layer_indices", std::move(kept));
  }
}

void ScaleAttention(const ModelConfig& real, int d, Value& root) {
  const int kv = std::min(real.num_key_value_heads, 2);
  const int q = kv * std::min(real.num_attention_heads / real.num_key_value_heads, 2);
  root.Set("num_attention_heads", Value::Int(q));
  root.Set("num_key_value_heads", Value::Int(kv));
  int head_dim = d / q;
  bool stated = false;
  for (const char* key : {"head_dim", "attention_head_dim"}) {
    if (Present(root, key)) {
      root.Set(key, Value::Int(16));
      stated = true;
    }
  }
  if (stated || real.architecture == Architecture::kNemotronH) {
    // Nemotron-H always states head_dim: transformers' built-in NemotronHConfig reads
    // only head_dim (default 128), the checkpoints' own code attention_head_dim.
    head_dim = 16;
    root.Set("head_dim", Value::Int(16));
  }
  if (Present(root, "attn_rotary_emb")) {  // Bamba: the rotary dim, kept as a share of the head
    const int rot = std::max(2, static_cast<int>(head_dim * real.partial_rotary_factor) / 2 * 2);
    root.Set("attn_rotary_emb", Value::Int(rot));
  }
}

void ScaleMamba(const ModelConfig& real, int d, Value& root) {
  const int groups = std::min(real.mamba_n_groups, 2);
  const int heads = 2 * groups;
  if (real.architecture == Architecture::kNemotronH) {
    root.Set("mamba_num_heads", Value::Int(heads));
    root.Set("mamba_head_dim", Value::Int(16));
    root.Set(KeyOf(root, {"n_groups", "mamba_n_groups"}), Value::Int(groups));
    root.Set("ssm_state_size", Value::Int(std::min(real.mamba_d_state, 16)));
    root.Set(KeyOf(root, {"chunk_size", "mamba_chunk_size"}),
             Value::Int(std::min(real.mamba_chunk_size, 16)));
    return;
  }
  root.Set("mamba_n_heads", Value::Int(heads));
  if (Present(root, "mamba_d_head") && root.Find("mamba_d_head")->is_int()) {
    root.Set("mamba_d_head", Value::Int(real.mamba_expand * d / heads));  // else "auto"
  }
  root.Set("mamba_n_groups", Value::Int(groups));
  root.Set("mamba_d_state", Value::Int(std::min(real.mamba_d_state, 16)));
  root.Set("mamba_chunk_size", Value::Int(std::min(real.mamba_chunk_size, 16)));
}

void ScaleFfn(const ModelConfig& real, int d, Value& root) {
  const bool moe = real.CountFfns(FfnKind::kMoe) > 0;
  switch (real.architecture) {
    case Architecture::kBamba:
      root.Set("intermediate_size", Value::Int(2 * d));
      return;
    case Architecture::kGraniteMoeHybrid:
      root.Set("shared_intermediate_size", Value::Int(2 * d));
      root.Set("intermediate_size", Value::Int(moe ? d / 2 : 2 * d));
      if (moe) {
        root.Set("num_local_experts", Value::Int(std::min(real.num_experts, 8)));
        root.Set("num_experts_per_tok", Value::Int(std::min(real.num_experts_per_tok, 2)));
      }
      return;
    case Architecture::kNemotronH:
      root.Set("intermediate_size", Value::Int(2 * d));
      if (!moe) return;
      root.Set("moe_intermediate_size", Value::Int(d / 2));
      root.Set("moe_shared_expert_intermediate_size", Value::Int(3 * d / 4));
      const int experts = std::min(real.num_experts, 8);
      const int top_k = std::min(real.num_experts_per_tok, 2);
      int n_group = real.moe_n_group;
      while (n_group > 1 && (experts % n_group != 0 || experts / n_group < 2)) --n_group;
      int topk_group = std::min(real.moe_topk_group, n_group);
      if (topk_group * (experts / n_group) < top_k) topk_group = n_group;
      root.Set("n_routed_experts", Value::Int(experts));
      root.Set("num_experts_per_tok", Value::Int(top_k));
      if (Present(root, "n_group") || n_group != 1) root.Set("n_group", Value::Int(n_group));
      if (Present(root, "topk_group") || topk_group != 1) {
        root.Set("topk_group", Value::Int(topk_group));
      }
      return;
  }
}

}  // namespace

absl::StatusOr<std::string> ScaledConfigJson(std::string_view real_json,
                                             const ScaleDownOptions& options, int vocab_size,
                                             int bos_token_id, int eos_token_id, int pad_token_id) {
  const int d = options.hidden_size;
  if (d <= 0 || d % 16 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("scaled hidden_size must be a positive multiple of 16, got ", d));
  }
  if (options.max_layers < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_layers must be >= 0 (0 keeps every layer), got ", options.max_layers));
  }
  HC_ASSIGN_OR_RETURN(const ModelConfig real, ParseModelConfig(real_json));
  HC_ASSIGN_OR_RETURN(Value root, json::Parse(real_json, {.allow_nan_infinity = true}));
  root.Set("hidden_size", Value::Int(d));
  TruncateLayers(real, options.max_layers > 0 ? options.max_layers : real.num_hidden_layers, root);
  ScaleAttention(real, d, root);
  ScaleMamba(real, d, root);
  ScaleFfn(real, d, root);
  root.Set("vocab_size", Value::Int(vocab_size));
  root.Set("bos_token_id", Value::Int(bos_token_id));
  root.Set("eos_token_id", Value::Int(eos_token_id));
  root.Set("pad_token_id", Value::Int(pad_token_id));
  const Value dtype = Value::String(std::string(kernels::TorchDTypeName(options.dtype)));
  if (Present(root, "dtype")) root.Set("dtype", dtype);
  if (Present(root, "torch_dtype") || !Present(root, "dtype")) root.Set("torch_dtype", dtype);
  std::string text = json::Serialize(root, {.indent = 2, .allow_nan_infinity = true}) + "\n";
  // The scaled file must load, or the scaling rules above are wrong for it.
  auto check = ParseModelConfig(text);
  if (!check.ok()) {
    return absl::InternalError(
        absl::StrCat("the scaled config does not load (", check.status().message(), "):\n", text));
  }
  return text;
}

absl::StatusOr<ModelConfig> WriteScaledCheckpoint(const std::string& config_path,
                                                  const std::string& out_dir,
                                                  const ScaleDownOptions& options) {
  std::error_code ec;
  const std::string file =
      std::filesystem::is_directory(config_path, ec) ? config_path + "/config.json" : config_path;
  HC_ASSIGN_OR_RETURN(const std::string real_json, ReadFileToString(file));
  auto real = ParseModelConfig(real_json);
  if (!real.ok()) {
    return absl::Status(real.status().code(), absl::StrCat(file, ": ", real.status().message()));
  }
  const char* family = real->architecture == Architecture::kNemotronH ? "nemotron-nano-tiny"
                       : real->architecture == Architecture::kGraniteMoeHybrid ? "granite-tiny"
                                                                               : "tiny";
  HC_ASSIGN_OR_RETURN(const SyntheticTokenizerSpec spec, SyntheticTokenizerSpecFor(family));
  const BpeModel tok = TrainSyntheticTokenizer(spec);
  HC_ASSIGN_OR_RETURN(std::string text,
                      ScaledConfigJson(real_json, options, static_cast<int>(tok.vocab.size()),
                                       kSyntheticEndOfTextId,
                                       SyntheticEndOfTurnId(spec.chat_template), kSyntheticPadId));
  HC_ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(text));
  const CheckpointFiles files{.config = config,
                              .config_json = std::move(text),
                              .tokenizer = &tok,
                              .chat_template = spec.chat_template,
                              .dtype = options.dtype,
                              .seed = options.seed,
                              .max_shard_bytes = options.max_shard_bytes};
  HC_RETURN_IF_ERROR(WriteCheckpointFiles(files, out_dir));
  return config;
}

}  // namespace hc::model
