#include "worker/model/synthetic_checkpoint.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "common/model_path.h"
#include "common/status_macros.h"
#include "common/text/chat_template.h"
#include "common/text/synthetic_tokenizer.h"
#include "worker/model/half.h"
#include "worker/model/model_config_io.h"
#include "worker/model/model_tensors.h"
#include "worker/model/safetensors.h"

namespace hc::model {
namespace {

namespace fs = std::filesystem;

// Bump when the generated files change, so cached checkpoints regenerate.

// SplitMix64: a tiny, platform-independent generator (std distributions are
// implementation-defined, so we derive uniforms and normals ourselves).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  double Normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = 1.0 - Uniform(), u2 = Uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * M_PI * u2);
  }

 private:
  uint64_t state_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// Initial values chosen so activations stay O(1) through every layer in fp32:
// projections ~ N(0, 1/fan_in), embeddings ~ N(0, 1/embedding_multiplier²), norms 1, Mamba's A in
// [-16, -1], dt = softplus(dt_bias) in [0.001, 0.1], D = 1.
void InitTensor(const TensorSpec& spec, const ModelConfig& config, uint64_t seed,
                std::vector<float>* out) {
  Rng rng(seed ^ Fnv1a(spec.name));
  const size_t n = static_cast<size_t>(spec.NumElements());
  out->assign(n, 0.0f);
  auto& v = *out;
  const std::string& name = spec.name;
  if (absl::EndsWith(name, "norm.weight") || absl::EndsWith(name, "norm_f.weight") ||
      absl::EndsWith(name, ".D")) {
    for (float& x : v) x = 1.0f;
  } else if (absl::EndsWith(name, "e_score_correction_bias")) {
    for (float& x : v) x = static_cast<float>(rng.Uniform(-0.1, 0.1));
  } else if (absl::EndsWith(name, ".A_log")) {
    for (float& x : v) x = static_cast<float>(std::log(rng.Uniform(1.0, 16.0)));
  } else if (absl::EndsWith(name, ".dt_bias")) {
    for (float& x : v) {
      const double dt = std::max(1e-4, std::exp(rng.Uniform(std::log(0.001), std::log(0.1))));
      x = static_cast<float>(dt + std::log(-std::expm1(-dt)));  // inverse softplus
    }
  } else if (absl::StrContains(name, "conv1d.")) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(config.mamba_d_conv));
    for (float& x : v) x = static_cast<float>(rng.Uniform(-bound, bound));
  } else if (absl::EndsWith(name, ".bias")) {
    // in_proj / out_proj biases start at zero.
  } else if (name == "model.embed_tokens.weight" || name == "backbone.embeddings.weight") {
    // Scaled so that embedding_multiplier * embedding ~ N(0, 1) (µP, Granite).
    const double std = 1.0 / config.embedding_multiplier;
    for (float& x : v) x = static_cast<float>(rng.Normal() * std);
  } else {
    // [out, in] projections and lm_head.
    const double std = 1.0 / std::sqrt(static_cast<double>(spec.shape.back()));
    for (float& x : v) x = static_cast<float>(rng.Normal() * std);
  }
}

absl::Status WriteTextFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

}  // namespace

namespace {

// The sizes shared by the Bamba presets.
void BambaSizes(bool small, ModelConfig& c) {
  c.mamba_n_groups = 1;
  c.mamba_d_conv = 4;
  c.mamba_expand = 2;
  c.mamba_conv_bias = true;
  c.mamba_proj_bias = false;
  c.partial_rotary_factor = 0.5f;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.tie_word_embeddings = false;
  c.max_position_embeddings = small ? 8192 : 4096;
  c.hidden_size = small ? 768 : 64;
  c.intermediate_size = small ? 1536 : 192;
  c.num_attention_heads = small ? 12 : 4;
  c.num_key_value_heads = small ? 4 : 2;
  c.head_dim = small ? 64 : 16;
  c.mamba_n_heads = small ? 24 : 4;
  c.mamba_d_head = small ? 64 : 32;
  c.mamba_d_state = small ? 64 : 16;
  c.mamba_chunk_size = small ? 128 : 16;
}

// Granite-4.0-H-like: µP multipliers as the released checkpoints have them
// (embedding 12, attention 1/head_dim, residual 0.22, logits / 8), NoPE
// attention unless `rope`, two Mamba groups; MoE presets add 8 experts, top 2.
void GraniteSizes(bool small, bool moe, bool rope, ModelConfig& c) {
  BambaSizes(small, c);
  c.architecture = Architecture::kGraniteMoeHybrid;
  c.mamba_n_groups = 2;
  c.partial_rotary_factor = 1.0f;
  c.use_rope = rope;
  c.rms_norm_eps = 1e-5f;
  c.embedding_multiplier = 12.0f;
  c.attention_multiplier = 1.0f / static_cast<float>(c.head_dim);
  c.residual_multiplier = 0.22f;
  c.logits_scaling = 8.0f;
  c.intermediate_size = small ? 1536 : 128;  // shared_intermediate_size
  c.SetMixerLayers(small ? 10 : 4, small ? std::vector<int>{3, 7} : std::vector<int>{2},
                   moe ? FfnKind::kMoe : FfnKind::kMlp);
  if (moe) {
    c.num_experts = 8;
    c.num_experts_per_tok = 2;
    c.moe_intermediate_size = small ? 512 : 32;
    c.moe_shared_intermediate_size = c.intermediate_size;
    c.moe_router = MoeRouter::kSoftmaxTopK;
  }
}

// Nemotron-H-like: one block per layer from a hybrid_override_pattern, relu²
// MLPs, NoPE attention, Mamba with 2 groups (dt clamped below at 0.001); the
// tiny preset has a MoE block (8 experts in 2 groups, top 2 from 1 group).
void NemotronSizes(bool small, ModelConfig& c) {
  BambaSizes(small, c);
  c.architecture = Architecture::kNemotronH;
  c.mlp_activation = MlpActivation::kRelu2;
  c.use_rope = false;
  c.partial_rotary_factor = 1.0f;
  c.mamba_n_groups = 2;
  c.time_step_min_limit = 0.001f;
  c.intermediate_size = small ? 3072 : 192;
  const std::string pattern = small ? "M-M-M*-M-M-M*-" : "M-M*EM-";
  c.layers.clear();
  for (char ch : pattern) {
    c.layers.push_back(ch == 'M'   ? LayerSpec{MixerKind::kMamba, FfnKind::kNone}
                       : ch == '*' ? LayerSpec{MixerKind::kAttention, FfnKind::kNone}
                       : ch == 'E' ? LayerSpec{MixerKind::kNone, FfnKind::kMoe}
                                   : LayerSpec{MixerKind::kNone, FfnKind::kMlp});
  }
  c.num_hidden_layers = static_cast<int>(c.layers.size());
  if (!small) {
    c.num_experts = 8;
    c.num_experts_per_tok = 2;
    c.moe_intermediate_size = 32;
    c.moe_shared_intermediate_size = 48;
    c.moe_router = MoeRouter::kSigmoidGroupTopK;
    c.moe_n_group = 2;
    c.moe_topk_group = 1;
    c.moe_norm_topk_prob = true;
    c.moe_routed_scaling_factor = 1.5f;
  }
}

}  // namespace

absl::StatusOr<SyntheticPreset> GetSyntheticPreset(std::string_view name) {
  SyntheticPreset p;
  ModelConfig& c = p.config;
  p.name = std::string(name);
  if (name == "tiny" || name == "small") {
    BambaSizes(name == "small", c);
    c.SetMixerLayers(name == "small" ? 10 : 4,
                     name == "small" ? std::vector<int>{3, 7} : std::vector<int>{2});
    p.seed = name == "small" ? 0x5A11 : 0x7159;
  } else if (name == "granite-tiny" || name == "granite-small") {
    GraniteSizes(name == "granite-small", /*moe=*/false, /*rope=*/false, c);
    p.seed = 0x6A71;
  } else if (name == "granite-moe-tiny") {
    GraniteSizes(false, /*moe=*/true, /*rope=*/true, c);
    p.seed = 0x6A72;
  } else if (name == "nemotron-tiny" || name == "nemotron-small" || name == "nemotron-nano-tiny") {
    NemotronSizes(name == "nemotron-small", c);
    p.seed = 0x4E71;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown synthetic preset \"", std::string(name),
        "\" (tiny, small, granite-tiny, granite-small, granite-moe-tiny, nemotron-tiny, "
        "nemotron-small, nemotron-nano-tiny)"));
  }
  HC_ASSIGN_OR_RETURN(p.tokenizer, SyntheticTokenizerSpecFor(name));
  return p;
}

BpeModel SyntheticTokenizer(const SyntheticPreset& preset) {
  return TrainSyntheticTokenizer(preset.tokenizer);
}

namespace {
ModelConfig FinishConfig(const SyntheticPreset& preset, const BpeModel& tok) {
  ModelConfig c = preset.config;
  c.vocab_size = static_cast<int>(tok.vocab.size());
  c.bos_token_id = kSyntheticEndOfTextId;
  c.eos_token_id = SyntheticEndOfTurnId(preset.tokenizer.chat_template);
  c.pad_token_id = kSyntheticPadId;
  return c;
}
}  // namespace

absl::StatusOr<ModelConfig> SyntheticModelConfig(std::string_view preset_name) {
  HC_ASSIGN_OR_RETURN(SyntheticPreset preset, GetSyntheticPreset(preset_name));
  return FinishConfig(preset, SyntheticTokenizer(preset));
}

absl::Status WriteSyntheticCheckpoint(std::string_view preset_name, const std::string& out_dir,
                                      const SyntheticCheckpointOptions& options) {
  HC_ASSIGN_OR_RETURN(SyntheticPreset preset, GetSyntheticPreset(preset_name));
  if (options.dtype.has_value()) preset.dtype = *options.dtype;
  const BpeModel tok = SyntheticTokenizer(preset);
  const ModelConfig config = FinishConfig(preset, tok);
  HC_RETURN_IF_ERROR(ValidateModelConfig(config));
  // ModelConfigToJson states float32; the stored dtype replaces it (only that
  // key changes, so float32 checkpoints stay byte-identical).
  std::string config_json = ModelConfigToJson(config);
  const std::string fp32_key = "\"torch_dtype\": \"float32\"";
  const size_t at = config_json.find(fp32_key);
  if (at == std::string::npos) return absl::InternalError("config.json lacks torch_dtype");
  config_json.replace(
      at, fp32_key.size(),
      absl::StrCat("\"torch_dtype\": \"", kernels::TorchDTypeName(preset.dtype), "\""));
  CheckpointFiles files{.config = config,
                        .config_json = std::move(config_json),
                        .tokenizer = &tok,
                        .chat_template = preset.tokenizer.chat_template,
                        .dtype = preset.dtype,
                        .seed = preset.seed,
                        .max_shard_bytes = options.max_shard_bytes};
  return WriteCheckpointFiles(files, out_dir);
}

absl::Status WriteCheckpointFiles(const CheckpointFiles& files, const std::string& out_dir) {
  const ModelConfig& config = files.config;
  const BpeModel& tok = *files.tokenizer;
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", out_dir, ": ", ec.message()));
  const fs::path dir(out_dir);
  HC_RETURN_IF_ERROR(WriteTextFile(dir / "config.json", files.config_json));
  json::Value gen = json::Value::MakeObject();
  gen.Set("_from_model_config", json::Value::Bool(true));
  gen.Set("bos_token_id", json::Value::Int(config.bos_token_id));
  gen.Set("eos_token_id", json::Value::Int(config.eos_token_id));
  gen.Set("pad_token_id", json::Value::Int(config.pad_token_id));
  HC_RETURN_IF_ERROR(
      WriteTextFile(dir / "generation_config.json", json::Serialize(gen, {.indent = 2}) + "\n"));
  HC_RETURN_IF_ERROR(WriteTextFile(dir / "tokenizer.json", BpeTokenizerJson(tok) + "\n"));
  HC_RETURN_IF_ERROR(WriteTextFile(
      dir / "tokenizer_config.json",
      SyntheticTokenizerConfigJson(tok, config.max_position_embeddings, files.chat_template)));
  json::Value specials = json::Value::MakeObject();
  specials.Set("bos_token", json::Value::String(tok.vocab[config.bos_token_id]));
  specials.Set("eos_token", json::Value::String(tok.vocab[config.eos_token_id]));
  specials.Set("pad_token", json::Value::String(tok.vocab[config.pad_token_id]));
  HC_RETURN_IF_ERROR(WriteTextFile(dir / "special_tokens_map.json",
                                   json::Serialize(specials, {.indent = 2}) + "\n"));

  const std::vector<TensorSpec> specs = ModelTensorSpecs(config, files.dtype);
  std::vector<float> values;
  TensorFiller fill = [&](const TensorSpec& spec, char* dst) -> absl::Status {
    InitTensor(spec, config, files.seed, &values);
    if (spec.dtype == runtime::DType::kF32) {
      std::memcpy(dst, values.data(), values.size() * sizeof(float));
    } else {
      const bool bf16 = spec.dtype == runtime::DType::kBF16;
      for (size_t i = 0; i < values.size(); ++i) {
        const uint16_t h = bf16 ? F32ToBf16(values[i]) : F32ToF16(values[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
    }
    return absl::OkStatus();
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  if (files.max_shard_bytes > 0) {
    fs::remove(dir / "model.safetensors", ec);
    return WriteShardedSafetensors(out_dir, specs, fill, files.max_shard_bytes, metadata).status();
  }
  fs::remove(dir / "model.safetensors.index.json", ec);
  return WriteSafetensors((dir / "model.safetensors").string(), specs, fill, metadata);
}

absl::StatusOr<std::string> ResolveModelPath(std::string_view spec) {
  constexpr std::string_view kPrefix = "synthetic:";
  std::error_code ec;
  if (spec.substr(0, kPrefix.size()) != kPrefix) {
    const std::string dir(spec);
    if (!fs::is_directory(dir, ec) || !fs::exists(fs::path(dir) / "config.json", ec)) {
      return absl::NotFoundError(
          absl::StrCat("model path ", dir,
                       " is not a directory with a config.json (or use synthetic:<preset>, e.g. "
                       "synthetic:tiny, synthetic:granite-tiny, synthetic:nemotron-tiny)"));
    }
    return dir;
  }
  const std::string preset(spec.substr(kPrefix.size()));
  HC_RETURN_IF_ERROR(GetSyntheticPreset(preset).status());
  const fs::path root(ModelCacheRoot());
  const fs::path final_dir(SyntheticModelDir(preset));
  if (fs::exists(final_dir / "config.json", ec)) return final_dir.string();

  fs::create_directories(root, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot create ", root.string(), ": ", ec.message()));
  std::random_device rd;
  const fs::path tmp =
      root / absl::StrCat(".tmp-", preset, "-", getpid(), "-", static_cast<uint32_t>(rd()));
  absl::Status st = WriteSyntheticCheckpoint(preset, tmp.string());
  if (!st.ok()) {
    fs::remove_all(tmp, ec);
    return st;
  }
  if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
    const int err = errno;
    fs::remove_all(tmp, ec);
    // Another process finished first: its checkpoint is identical.
    if ((err == EEXIST || err == ENOTEMPTY) && fs::exists(final_dir / "config.json", ec)) {
      return final_dir.string();
    }
    return absl::InternalError(absl::StrCat("cannot move ", tmp.string(), " to ",
                                            final_dir.string(), ": ", strerror(err)));
  }
  return final_dir.string();
}

}  // namespace hc::model
