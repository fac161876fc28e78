// ShardPlan and the cutting of one rank's weight shard (Megatron / vLLM
// layout: column-parallel in_proj / qkv / gate_up slice output rows, with each
// fused segment sliced on its own; row-parallel out_proj / o_proj / down slice
// input columns; one Mamba group (G == 1) and too few KV heads are replicated).
#include "worker/model/hybrid_model_weights.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/half.h"
#include "worker/model/model_tensors.h"

namespace hc::model {

absl::StatusOr<ShardPlan> ShardPlan::Create(const ModelConfig& c, int tp, int rank) {
  auto bad = [&](std::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot split the model ", tp, " ways: ", std::string(what)));
  };
  if (tp < 1 || rank < 0 || rank >= tp) return bad(absl::StrCat("rank ", rank, " out of range"));
  if (c.hidden_size <= 0 || c.vocab_size <= 0 || c.num_hidden_layers <= 0) {
    return absl::InvalidArgumentError("model config has non-positive sizes");
  }
  if (static_cast<int>(c.layers.size()) != c.num_hidden_layers) {
    return absl::InvalidArgumentError("model config lists a different number of layers");
  }
  ShardPlan p;
  p.tp_size = tp;
  p.rank = rank;
  if (c.num_attention_layers() > 0) {
    if (c.num_attention_heads % tp != 0) return bad("num_attention_heads % tp != 0");
    if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0) {
      return absl::InvalidArgumentError("num_attention_heads must be a multiple of kv heads");
    }
    if (c.head_dim <= 0 || (c.use_rope && c.rotary_dim() % 2 != 0)) {
      return absl::InvalidArgumentError("head_dim must be positive with an even rotary_dim");
    }
    p.q_heads = c.num_attention_heads / tp;
    p.first_q_head = rank * p.q_heads;
    if (c.num_key_value_heads >= tp) {
      if (c.num_key_value_heads % tp != 0) return bad("num_key_value_heads % tp != 0");
      p.kv_heads = c.num_key_value_heads / tp;
      p.first_kv_head = rank * p.kv_heads;
    } else {
      if (tp % c.num_key_value_heads != 0) return bad("tp % num_key_value_heads != 0");
      p.kv_heads = 1;  // replicated
      p.first_kv_head = rank / (tp / c.num_key_value_heads);
    }
  }
  if (c.CountFfns(FfnKind::kMlp) > 0) {
    if (c.intermediate_size % tp != 0) return bad("intermediate_size % tp != 0");
    p.intermediate = c.intermediate_size / tp;
  }
  if (c.CountFfns(FfnKind::kMoe) > 0) {
    if (c.num_experts <= 0 || c.num_experts_per_tok <= 0) {
      return absl::InvalidArgumentError("MoE layers need experts and num_experts_per_tok");
    }
    if (c.moe_intermediate_size % tp != 0) return bad("the experts' intermediate size % tp != 0");
    if (c.moe_shared_intermediate_size % tp != 0) {
      return bad("the shared MLP's intermediate size % tp != 0");
    }
    p.moe_intermediate = c.moe_intermediate_size / tp;
    p.moe_shared_intermediate = c.moe_shared_intermediate_size / tp;
  }
  if (c.num_mamba_layers() > 0) {
    if (c.mamba_n_heads <= 0 || c.mamba_n_heads * c.mamba_d_head != c.d_inner()) {
      return absl::InvalidArgumentError("mamba_n_heads * mamba_d_head must equal d_inner");
    }
    if (c.mamba_n_groups <= 0 || c.mamba_n_heads % c.mamba_n_groups != 0) {
      return absl::InvalidArgumentError("mamba_n_heads must be a multiple of mamba_n_groups");
    }
    if (c.mamba_n_heads % tp != 0) return bad("mamba_n_heads % tp != 0");
    if (c.mamba_n_groups != 1 && c.mamba_n_groups % tp != 0) {
      return bad("mamba_n_groups must be 1 or a multiple of tp");
    }
    if (c.mamba_proj_bias) return absl::UnimplementedError("mamba_proj_bias = true");
    if (c.mamba_chunk_size <= 0 || c.mamba_d_conv < 1) {
      return absl::InvalidArgumentError("mamba_chunk_size and mamba_d_conv must be positive");
    }
    p.mamba_heads = c.mamba_n_heads / tp;
    p.mamba_groups = c.mamba_n_groups == 1 ? 1 : c.mamba_n_groups / tp;
    p.d_inner = c.d_inner() / tp;
    p.conv_dim = p.d_inner + 2 * p.mamba_groups * c.mamba_d_state;
    p.in_proj_dim = p.d_inner + p.conv_dim + p.mamba_heads;
    p.split_single_group = c.mamba_n_groups == 1 && tp > 1;
  }
  return p;
}

runtime::KvLayout ShardPlan::KvLayout(const ModelConfig& c, int num_blocks, int block_size) const {
  return {.num_layers = c.num_attention_layers(),
          .num_blocks = num_blocks,
          .block_size = block_size,
          .num_kv_heads = kv_heads,
          .head_dim = c.head_dim,
          .dtype = kv_dtype};
}

runtime::MambaLayout ShardPlan::MambaLayout(const ModelConfig& c, int num_slots) const {
  return {.num_layers = c.num_mamba_layers(),
          .num_slots = num_slots,
          .conv_dim = conv_dim,
          .conv_width = c.mamba_d_conv,
          .num_heads = mamba_heads,
          .head_dim = c.mamba_d_head,
          .state_size = c.mamba_d_state};
}

namespace internal {
namespace {

struct RowRange {
  int64_t begin;
  int64_t count;
};

// Rows of a [rows, cols] matrix, concatenated in the given order.
std::vector<float> TakeRows(const std::vector<float>& full, int64_t cols,
                            std::initializer_list<RowRange> ranges) {
  std::vector<float> out;
  for (const RowRange& r : ranges) {
    out.insert(out.end(), full.begin() + r.begin * cols, full.begin() + (r.begin + r.count) * cols);
  }
  return out;
}

// Columns [begin, begin + count) of a [rows, cols] matrix.
std::vector<float> TakeCols(const std::vector<float>& full, int64_t rows, int64_t cols,
                            int64_t begin, int64_t count) {
  std::vector<float> out(rows * count);
  for (int64_t i = 0; i < rows; ++i) {
    std::copy_n(full.begin() + i * cols + begin, count, out.begin() + i * count);
  }
  return out;
}

absl::StatusOr<DeviceBuffer> Upload(runtime::Backend* backend, const std::vector<float>& host) {
  HC_ASSIGN_OR_RETURN(DeviceBuffer buf, DeviceBuffer::Create(backend, host.size() * sizeof(float)));
  HC_RETURN_IF_ERROR(backend->CopyHostToDevice(buf.data(), host.data(), buf.size()));
  return buf;
}

// A matrix in `dtype`: fp32 as is, bf16 rounded to nearest even (exact for
// values read from a bf16 checkpoint).
absl::StatusOr<Matrix> UploadMatrix(runtime::Backend* backend, const std::vector<float>& host,
                                    runtime::DType dtype) {
  Matrix m{.dtype = dtype};
  if (dtype == runtime::DType::kF32) {
    HC_ASSIGN_OR_RETURN(m.buf, Upload(backend, host));
    return m;
  }
  std::vector<uint16_t> bf16(host.size());
  for (size_t i = 0; i < host.size(); ++i) bf16[i] = kernels::F32ToBf16(host[i]);
  HC_ASSIGN_OR_RETURN(m.buf, DeviceBuffer::Create(backend, bf16.size() * sizeof(uint16_t)));
  HC_RETURN_IF_ERROR(backend->CopyHostToDevice(m.buf.data(), bf16.data(), m.buf.size()));
  return m;
}

class ShardLoader {
 public:
  ShardLoader(const ModelConfig& c, const ShardPlan& p, TensorLoader load,
              runtime::Backend* backend, runtime::DType weight_dtype)
      : c_(c), p_(p), load_(load), backend_(backend), dtype_(weight_dtype), names_(c) {}

  absl::StatusOr<ModelWeights> Load() {
    ModelWeights w;
    const int64_t D = c_.hidden_size, V = c_.vocab_size;
    auto embed = load_(names_.Embed(), {V, D});
    if (!embed.ok() && absl::IsNotFound(embed.status()) &&
        c_.architecture == Architecture::kNemotronH) {
      // Checkpoints saved by transformers name the base model "model.", not "backbone.".
      names_ = TensorNames(c_, "model.");
      auto renamed = load_(names_.Embed(), {V, D});
      if (renamed.ok() || !absl::IsNotFound(renamed.status())) embed = std::move(renamed);
    }
    if (!embed.ok()) return embed.status();
    HC_ASSIGN_OR_RETURN(w.embed, Mat(*embed));
    HC_ASSIGN_OR_RETURN(w.final_norm, Full(names_.FinalNorm(), {D}));
    if (!c_.tie_word_embeddings && p_.rank == 0) {
      HC_ASSIGN_OR_RETURN(auto lm_head, load_(names_.LmHead(), {V, D}));
      HC_ASSIGN_OR_RETURN(w.lm_head, Mat(lm_head));
    }
    int attn_index = 0, mamba_index = 0;
    for (int i = 0; i < c_.num_hidden_layers; ++i) {
      LayerWeights layer;
      layer.spec = c_.layers[i];
      if (layer.spec.mixer == MixerKind::kAttention) {
        layer.group_index = attn_index++;
        HC_ASSIGN_OR_RETURN(layer.mixer_norm, Full(names_.MixerNorm(i), {D}));
        HC_RETURN_IF_ERROR(LoadAttention(i, &layer));
      } else if (layer.spec.mixer == MixerKind::kMamba) {
        layer.group_index = mamba_index++;
        HC_ASSIGN_OR_RETURN(layer.mixer_norm, Full(names_.MixerNorm(i), {D}));
        HC_RETURN_IF_ERROR(LoadMamba(i, &layer));
      }
      if (layer.spec.ffn != FfnKind::kNone) {
        const bool own_norm = c_.architecture == Architecture::kNemotronH;
        HC_ASSIGN_OR_RETURN(layer.ffn_norm,
                            Full(own_norm ? names_.MixerNorm(i) : names_.FfnNorm(i), {D}));
      }
      if (layer.spec.ffn == FfnKind::kMlp) {
        HC_ASSIGN_OR_RETURN(layer.mlp, LoadDenseMlp(i, c_.intermediate_size, p_.intermediate));
      } else if (layer.spec.ffn == FfnKind::kMoe) {
        HC_RETURN_IF_ERROR(LoadMoe(i, &layer.moe));
      }
      w.layers.push_back(std::move(layer));
    }
    return w;
  }

 private:
  absl::StatusOr<DeviceBuffer> Full(const std::string& name, const std::vector<int64_t>& shape) {
    HC_ASSIGN_OR_RETURN(auto t, load_(name, shape));
    return Upload(backend_, t);
  }

  absl::StatusOr<Matrix> Mat(const std::vector<float>& host) {
    return UploadMatrix(backend_, host, dtype_);
  }

  // This rank's slice of one MLP from its full tensors: SwiGLU from gate and
  // up [I, D] (each sliced on its own), relu² from up; down [D, I] by columns.
  absl::StatusOr<MlpWeights> SliceMlp(const std::vector<float>* gate, const std::vector<float>& up,
                                      const std::vector<float>& down, int64_t I, int64_t il) {
    const int64_t D = c_.hidden_size;
    MlpWeights m;
    m.width = static_cast<int>(il);
    std::vector<float> in;
    if (gate != nullptr) in = TakeRows(*gate, D, {{p_.rank * il, il}});
    const auto up_l = TakeRows(up, D, {{p_.rank * il, il}});
    in.insert(in.end(), up_l.begin(), up_l.end());
    HC_ASSIGN_OR_RETURN(m.in, Mat(in));
    HC_ASSIGN_OR_RETURN(m.down, Mat(TakeCols(down, D, I, p_.rank * il, il)));
    return m;
  }

  // The dense MLP of layer `l` (also Granite's shared MLP), full width I.
  absl::StatusOr<MlpWeights> LoadDenseMlp(int l, int64_t I, int64_t il) {
    const int64_t D = c_.hidden_size;
    HC_ASSIGN_OR_RETURN(auto down, load_(names_.MlpDown(l), {D, I}));
    switch (c_.architecture) {
      case Architecture::kBamba: {
        HC_ASSIGN_OR_RETURN(auto gate, load_(names_.MlpGate(l), {I, D}));
        HC_ASSIGN_OR_RETURN(auto up, load_(names_.MlpUp(l), {I, D}));
        return SliceMlp(&gate, up, down, I, il);
      }
      case Architecture::kGraniteMoeHybrid: {
        // input_linear [2I, D]: transformers' chunk(2) makes rows [0, I) the gate.
        HC_ASSIGN_OR_RETURN(auto gate_up, load_(names_.MlpGateUp(l), {2 * I, D}));
        const std::vector<float> up(gate_up.begin() + I * D, gate_up.end());
        gate_up.resize(I * D);
        return SliceMlp(&gate_up, up, down, I, il);
      }
      case Architecture::kNemotronH: {
        HC_ASSIGN_OR_RETURN(auto up, load_(names_.MlpUp(l), {I, D}));
        return SliceMlp(nullptr, up, down, I, il);
      }
    }
    return absl::InternalError("unknown architecture");
  }

  absl::Status LoadMoe(int l, MoeWeights* moe) {
    const int64_t D = c_.hidden_size, E = c_.num_experts, I = c_.moe_intermediate_size;
    const int64_t il = p_.moe_intermediate;
    HC_ASSIGN_OR_RETURN(moe->router, Full(names_.Router(l), {E, D}));
    if (c_.architecture == Architecture::kGraniteMoeHybrid) {
      HC_ASSIGN_OR_RETURN(auto gate_up, load_(names_.ExpertGateUp(l), {E, 2 * I, D}));
      HC_ASSIGN_OR_RETURN(auto down, load_(names_.ExpertDown(l), {E, D, I}));
      for (int64_t e = 0; e < E; ++e) {
        const auto base = gate_up.begin() + e * 2 * I * D;
        const std::vector<float> gate(base, base + I * D), up(base + I * D, base + 2 * I * D);
        const std::vector<float> dn(down.begin() + e * D * I, down.begin() + (e + 1) * D * I);
        HC_ASSIGN_OR_RETURN(MlpWeights m, SliceMlp(&gate, up, dn, I, il));
        moe->experts.push_back(std::move(m));
      }
      HC_ASSIGN_OR_RETURN(moe->shared, LoadDenseMlp(l, c_.moe_shared_intermediate_size,
                                                    p_.moe_shared_intermediate));
      return absl::OkStatus();
    }
    HC_ASSIGN_OR_RETURN(moe->router_bias, load_(names_.RouterBias(l), {E}));
    for (int e = 0; e < E; ++e) {
      HC_ASSIGN_OR_RETURN(auto up, load_(names_.ExpertUp(l, e), {I, D}));
      HC_ASSIGN_OR_RETURN(auto down, load_(names_.ExpertDown(l, e), {D, I}));
      HC_ASSIGN_OR_RETURN(MlpWeights m, SliceMlp(nullptr, up, down, I, il));
      moe->experts.push_back(std::move(m));
    }
    const int64_t Is = c_.moe_shared_intermediate_size;
    HC_ASSIGN_OR_RETURN(auto up, load_(names_.ExpertUp(l, -1), {Is, D}));
    HC_ASSIGN_OR_RETURN(auto down, load_(names_.ExpertDown(l, -1), {D, Is}));
    HC_ASSIGN_OR_RETURN(moe->shared, SliceMlp(nullptr, up, down, Is, p_.moe_shared_intermediate));
    return absl::OkStatus();
  }

  absl::Status LoadAttention(int l, LayerWeights* layer) {
    auto name = [&](std::string_view suffix) { return names_.Attention(l, suffix); };
    const int64_t D = c_.hidden_size, hd = c_.head_dim;
    const int64_t hq = c_.num_attention_heads, hkv = c_.num_key_value_heads;
    HC_ASSIGN_OR_RETURN(auto q, load_(name("q_proj.weight"), {hq * hd, D}));
    HC_ASSIGN_OR_RETURN(auto k, load_(name("k_proj.weight"), {hkv * hd, D}));
    HC_ASSIGN_OR_RETURN(auto v, load_(name("v_proj.weight"), {hkv * hd, D}));
    HC_ASSIGN_OR_RETURN(auto o, load_(name("o_proj.weight"), {D, hq * hd}));
    auto qkv = TakeRows(q, D, {{p_.first_q_head * hd, p_.q_heads * hd}});
    for (const auto* kv : {&k, &v}) {
      const auto part = TakeRows(*kv, D, {{p_.first_kv_head * hd, p_.kv_heads * hd}});
      qkv.insert(qkv.end(), part.begin(), part.end());
    }
    HC_ASSIGN_OR_RETURN(layer->qkv, Mat(qkv));
    HC_ASSIGN_OR_RETURN(layer->o,
                        Mat(TakeCols(o, D, hq * hd, p_.first_q_head * hd, p_.q_heads * hd)));
    return absl::OkStatus();
  }

  absl::Status LoadMamba(int l, LayerWeights* layer) {
    auto name = [&](std::string_view suffix) { return names_.Mamba(l, suffix); };
    const int64_t D = c_.hidden_size, d = c_.d_inner(), H = c_.mamba_n_heads;
    const int64_t gn = static_cast<int64_t>(c_.mamba_n_groups) * c_.mamba_d_state;
    const int64_t W = c_.mamba_d_conv, conv = c_.conv_dim();
    const int64_t dl = p_.d_inner, hl = p_.mamba_heads;
    const int64_t gnl = static_cast<int64_t>(p_.mamba_groups) * c_.mamba_d_state;
    const int64_t g0n = c_.mamba_n_groups == 1 ? 0 : p_.rank * gnl;  // first local B/C row
    const int64_t r = p_.rank;
    HC_ASSIGN_OR_RETURN(auto in_proj, load_(name("in_proj.weight"), {c_.in_proj_dim(), D}));
    HC_ASSIGN_OR_RETURN(layer->in_proj, Mat(TakeRows(in_proj, D,
                                                     {{r * dl, dl},                       // z
                                                      {d + r * dl, dl},                   // x
                                                      {2 * d + g0n, gnl},                 // B
                                                      {2 * d + gn + g0n, gnl},            // C
                                                      {2 * d + 2 * gn + r * hl, hl}})));  // dt
    const std::initializer_list<RowRange> conv_rows = {
        {r * dl, dl}, {d + g0n, gnl}, {d + gn + g0n, gnl}};
    HC_ASSIGN_OR_RETURN(auto conv_w, load_(name("conv1d.weight"), {conv, 1, W}));
    HC_ASSIGN_OR_RETURN(layer->conv_w, Upload(backend_, TakeRows(conv_w, W, conv_rows)));
    if (c_.mamba_conv_bias) {
      HC_ASSIGN_OR_RETURN(auto conv_b, load_(name("conv1d.bias"), {conv}));
      HC_ASSIGN_OR_RETURN(layer->conv_b, Upload(backend_, TakeRows(conv_b, 1, conv_rows)));
    }
    for (auto [tensor, buf] : {std::pair{"A_log", &layer->a_log}, std::pair{"D", &layer->d},
                               std::pair{"dt_bias", &layer->dt_bias}}) {
      HC_ASSIGN_OR_RETURN(auto t, load_(name(tensor), {H}));
      HC_ASSIGN_OR_RETURN(*buf, Upload(backend_, TakeRows(t, 1, {{r * hl, hl}})));
    }
    HC_ASSIGN_OR_RETURN(auto norm, load_(name("norm.weight"), {d}));
    HC_ASSIGN_OR_RETURN(layer->norm, Upload(backend_, TakeRows(norm, 1, {{r * dl, dl}})));
    HC_ASSIGN_OR_RETURN(auto out, load_(name("out_proj.weight"), {D, d}));
    HC_ASSIGN_OR_RETURN(layer->out_proj, Mat(TakeCols(out, D, d, r * dl, dl)));
    return absl::OkStatus();
  }

  const ModelConfig& c_;
  const ShardPlan& p_;
  TensorLoader load_;
  runtime::Backend* backend_;
  runtime::DType dtype_;
  TensorNames names_;
};

}  // namespace

absl::StatusOr<ModelWeights> LoadShardWeights(const ModelConfig& config, const ShardPlan& plan,
                                              TensorLoader load, runtime::Backend* backend,
                                              runtime::DType weight_dtype) {
  return ShardLoader(config, plan, load, backend, weight_dtype).Load();
}

}  // namespace internal
}  // namespace hc::model
