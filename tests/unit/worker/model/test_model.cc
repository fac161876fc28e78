#include "tests/unit/worker/model/test_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "kernels/half.h"
#include "worker/model/model_tensors.h"
#include "worker/runtime/cpu_backend.h"

namespace hc::model::testing {

const char* TinyArchName(TinyArch arch) {
  switch (arch) {
    case TinyArch::kBamba:
      return "bamba";
    case TinyArch::kGranite:
      return "granite";
    case TinyArch::kGraniteMoe:
      return "granite_moe";
    case TinyArch::kNemotron:
      return "nemotron";
  }
  return "?";
}

ModelConfig TinyConfig(int mamba_groups, TinyArch arch) {
  ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 3;
  c.SetMixerLayers(3, {1});
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.mamba_n_heads = 4;
  c.mamba_d_head = 16;
  c.mamba_n_groups = mamba_groups;
  c.mamba_d_state = 8;
  c.mamba_d_conv = 4;
  c.mamba_expand = 2;
  c.mamba_chunk_size = 8;
  c.partial_rotary_factor = 0.5f;
  c.vocab_size = 64;
  c.rms_norm_eps = 1e-5f;
  if (arch == TinyArch::kGranite || arch == TinyArch::kGraniteMoe) {
    c.architecture = Architecture::kGraniteMoeHybrid;
    c.partial_rotary_factor = 1.0f;
    c.use_rope = arch == TinyArch::kGraniteMoe;
    c.embedding_multiplier = 6.0f;
    c.attention_multiplier = 0.25f;
    c.residual_multiplier = 0.5f;
    c.logits_scaling = 2.0f;
    c.intermediate_size = 24;  // shared_intermediate_size
    if (arch == TinyArch::kGraniteMoe) {
      c.SetMixerLayers(3, {1}, FfnKind::kMoe);
      c.num_experts = 4;
      c.num_experts_per_tok = 2;
      c.moe_intermediate_size = 16;
      c.moe_shared_intermediate_size = 24;
    }
  } else if (arch == TinyArch::kNemotron) {
    c.architecture = Architecture::kNemotronH;
    c.use_rope = false;
    c.partial_rotary_factor = 1.0f;
    c.mlp_activation = MlpActivation::kRelu2;
    c.time_step_min_limit = 0.001f;
    c.layers = {{MixerKind::kMamba, FfnKind::kNone},
                {MixerKind::kNone, FfnKind::kMlp},
                {MixerKind::kAttention, FfnKind::kNone},
                {MixerKind::kNone, FfnKind::kMoe},
                {MixerKind::kMamba, FfnKind::kNone}};
    c.num_hidden_layers = 5;
    c.num_experts = 4;
    c.num_experts_per_tok = 2;
    c.moe_intermediate_size = 16;
    c.moe_shared_intermediate_size = 24;
    c.moe_router = MoeRouter::kSigmoidGroupTopK;
    c.moe_n_group = 2;
    c.moe_topk_group = 1;
    c.moe_routed_scaling_factor = 1.5f;
  }
  return c;
}

RandomTensorSource::RandomTensorSource(const ModelConfig& c, uint32_t seed, bool bf16_representable)
    : seed_(seed), bf16_representable_(bf16_representable) {
  if (c.architecture == Architecture::kBamba) {
    AddBamba(c);
    return;
  }
  for (const TensorSpec& spec : ModelTensorSpecs(c)) {
    const std::string& n = spec.name;
    const float s = 1.0f / std::sqrt(static_cast<float>(spec.shape.back()));
    if (absl::EndsWith(n, "norm.weight") || absl::EndsWith(n, "norm_f.weight")) {
      Add(n, spec.shape, 0.8f, 1.2f);
    } else if (absl::EndsWith(n, ".A_log")) {
      Add(n, spec.shape, 0.0f, 2.5f);
    } else if (absl::EndsWith(n, ".D")) {
      Add(n, spec.shape, 0.5f, 1.5f);
    } else if (absl::EndsWith(n, ".dt_bias")) {
      Add(n, spec.shape, -4.0f, -1.0f);
    } else if (absl::EndsWith(n, "conv1d.weight")) {
      Add(n, spec.shape, -0.5f, 0.5f);
    } else if (absl::EndsWith(n, "conv1d.bias") || absl::EndsWith(n, "correction_bias")) {
      Add(n, spec.shape, -0.1f, 0.1f);
    } else if (n == TensorNames(c).Embed()) {
      Add(n, spec.shape, -1.0f, 1.0f);
    } else if (absl::EndsWith(n, "q_proj.weight") || absl::EndsWith(n, "k_proj.weight") ||
               absl::StrContains(n, "router") || absl::EndsWith(n, "gate.weight")) {
      Add(n, spec.shape, -2 * s, 2 * s);
    } else {
      Add(n, spec.shape, -s, s);
    }
  }
}

void RandomTensorSource::AddBamba(const ModelConfig& c) {
  const int64_t D = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const float sd = 1.0f / std::sqrt(static_cast<float>(D));
  Add("model.embed_tokens.weight", {V, D}, -1.0f, 1.0f);
  Add("model.final_layernorm.weight", {D}, 0.8f, 1.2f);
  if (!c.tie_word_embeddings) Add("lm_head.weight", {V, D}, -sd, sd);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    Add(p + "input_layernorm.weight", {D}, 0.8f, 1.2f);
    Add(p + "pre_ff_layernorm.weight", {D}, 0.8f, 1.2f);
    Add(p + "feed_forward.gate_proj.weight", {I, D}, -sd, sd);
    Add(p + "feed_forward.up_proj.weight", {I, D}, -sd, sd);
    const float si = 1.0f / std::sqrt(static_cast<float>(I));
    Add(p + "feed_forward.down_proj.weight", {D, I}, -si, si);
    if (c.IsAttentionLayer(i)) {
      const int64_t hd = c.head_dim, hq = c.num_attention_heads, hkv = c.num_key_value_heads;
      Add(p + "self_attn.q_proj.weight", {hq * hd, D}, -2 * sd, 2 * sd);
      Add(p + "self_attn.k_proj.weight", {hkv * hd, D}, -2 * sd, 2 * sd);
      Add(p + "self_attn.v_proj.weight", {hkv * hd, D}, -sd, sd);
      const float so = 1.0f / std::sqrt(static_cast<float>(hq * hd));
      Add(p + "self_attn.o_proj.weight", {D, hq * hd}, -so, so);
    } else {
      const int64_t d = c.d_inner(), H = c.mamba_n_heads;
      Add(p + "mamba.in_proj.weight", {c.in_proj_dim(), D}, -sd, sd);
      Add(p + "mamba.conv1d.weight", {c.conv_dim(), 1, c.mamba_d_conv}, -0.5f, 0.5f);
      Add(p + "mamba.conv1d.bias", {c.conv_dim()}, -0.1f, 0.1f);
      Add(p + "mamba.A_log", {H}, 0.0f, 2.5f);
      Add(p + "mamba.D", {H}, 0.5f, 1.5f);
      Add(p + "mamba.dt_bias", {H}, -4.0f, -1.0f);
      Add(p + "mamba.norm.weight", {d}, 0.8f, 1.2f);
      const float sdi = 1.0f / std::sqrt(static_cast<float>(d));
      Add(p + "mamba.out_proj.weight", {D, d}, -sdi, sdi);
    }
  }
}

void RandomTensorSource::Add(const std::string& name, std::vector<int64_t> shape, float lo,
                             float hi) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  std::mt19937 rng(seed_ + static_cast<uint32_t>(std::hash<std::string>{}(name)&0xffff));
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t{std::move(shape), std::vector<float>(n)};
  for (float& x : t.data) x = dist(rng);
  if (bf16_representable_) {
    for (float& x : t.data) x = kernels::Bf16ToF32(kernels::F32ToBf16(x));
  }
  tensors_[name] = std::move(t);
}

absl::StatusOr<TensorView> RandomTensorSource::Get(std::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end())
    return absl::NotFoundError(absl::StrCat("no tensor ", std::string(name)));
  return TensorView{.dtype = runtime::DType::kF32,
                    .shape = it->second.shape,
                    .data = it->second.data.data(),
                    .num_bytes = it->second.data.size() * sizeof(float)};
}

bool RandomTensorSource::Has(std::string_view name) const { return tensors_.contains(name); }

std::vector<std::string> RandomTensorSource::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, t] : tensors_) names.push_back(name);
  return names;
}

absl::StatusOr<std::vector<float>> LoadF32ForTest(const TensorSource& source, std::string_view name,
                                                  const std::vector<int64_t>& shape) {
  HC_ASSIGN_OR_RETURN(TensorView view, source.Get(name));
  if (view.dtype != runtime::DType::kF32 || view.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(name), ": shape [",
                                                   absl::StrJoin(view.shape, ","), "], expected [",
                                                   absl::StrJoin(shape, ","), "]"));
  }
  std::vector<float> out(view.num_bytes / sizeof(float));
  std::memcpy(out.data(), view.data, view.num_bytes);
  return out;
}

absl::StatusOr<std::unique_ptr<TpRunner>> TpRunner::Create(
    const ModelConfig& config, const TensorSource& source, int tp, int num_blocks, int block_size,
    int num_slots, size_t max_bytes, runtime::DType weight_dtype, runtime::DType kv_dtype) {
  return Create(config, source,
                {.tp = tp,
                 .num_blocks = num_blocks,
                 .block_size = block_size,
                 .num_slots = num_slots,
                 .max_bytes = max_bytes,
                 .weight_dtype = weight_dtype,
                 .kv_dtype = kv_dtype});
}

absl::StatusOr<std::unique_ptr<TpRunner>> TpRunner::Create(const ModelConfig& config,
                                                           const TensorSource& source,
                                                           const TpRunnerOptions& o) {
  auto runner = std::unique_ptr<TpRunner>(new TpRunner());
  HC_ASSIGN_OR_RETURN(runner->backend_,
                      runtime::CreateCpuBackend({.kernels = o.kernels, .max_bytes = o.max_bytes}));
  HC_ASSIGN_OR_RETURN(runner->model_,
                      TensorParallelModel::Create(
                          {.tp_size = o.tp,
                           .backend = runner->backend_.get(),
                           .weight_dtype = o.weight_dtype,
                           .kv_dtype = o.kv_dtype,
                           .rank_threads = o.rank_threads},
                          config, [&](std::string_view name, const std::vector<int64_t>& s) {
                            return LoadF32ForTest(source, name, s);
                          }));
  HC_ASSIGN_OR_RETURN(runner->cache_,
                      runtime::BackendCacheMemory::Create(
                          runner->model_->KvLayout(o.num_blocks, o.block_size),
                          runner->model_->MambaLayout(o.num_slots),
                          std::vector<runtime::Backend*>(o.tp, runner->backend_.get())));
  if (!o.rank_threads.empty() && o.rank_threads[0] > 1)
    runner->rank0_pool_.emplace(o.rank_threads[0]);
  return runner;
}

absl::StatusOr<std::vector<float>> TpRunner::Forward(const ForwardBatch& batch) {
  const ScopedIntraOpPool bind(rank0_pool_.has_value() ? &*rank0_pool_ : nullptr);
  std::vector<float> logits;
  HC_RETURN_IF_ERROR(model_->Forward(batch, cache_.get(), &logits));
  return logits;
}

double MaxRelError(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size() || want.empty()) return INFINITY;
  double diff = 0.0, scale = 1e-30;
  for (size_t i = 0; i < got.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(got[i]) - want[i]));
    scale = std::max(scale, std::abs(static_cast<double>(want[i])));
  }
  return diff / scale;
}

}  // namespace hc::model::testing
