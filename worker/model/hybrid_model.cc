// HybridModel: the per-rank forward pass (see hybrid_model.h).
#include "worker/model/hybrid_model.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/model/hybrid_model_moe.h"
#include "worker/model/hybrid_model_weights.h"

namespace hc::model {
namespace {

using kernels::ConstRows;
using kernels::Rows;
using runtime::DeviceBuffer;

// The batch flattened into the index arrays the kernels take (host copies;
// uploaded to the backend per Forward).
struct BatchIndex {
  int num_tokens = 0;
  int num_seqs = 0;
  int max_blocks = 1;
  bool all_decode = true;                             // every sequence brings exactly one token
  std::vector<int32_t> ids, positions, slot_mapping;  // [T]
  std::vector<int32_t> qsl;                           // [S + 1]
  std::vector<int32_t> computed, mamba_slots;         // [S]
  std::vector<int32_t> block_tables;                  // [S, max_blocks]
  std::vector<int32_t> logit_rows;                    // [R] token rows
};

// Device copies of the index arrays.
struct DeviceIndex {
  const int32_t* ids;
  const int32_t* positions;
  const int32_t* slot_mapping;
  const int32_t* qsl;
  const int32_t* computed;
  const int32_t* mamba_slots;
  const int32_t* block_tables;
  const int32_t* logit_rows;
};

class HybridModelImpl final : public HybridModel {
 public:
  HybridModelImpl(const HybridModelOptions& options, const ModelConfig& config, ShardPlan plan,
                  internal::ModelWeights weights)
      : options_(options),
        config_(config),
        plan_(plan),
        weights_(std::move(weights)),
        k_(options.backend->kernels()) {}

  const ModelConfig& config() const override { return config_; }
  const ShardPlan& plan() const override { return plan_; }

  absl::Status Forward(const ForwardBatch& batch, runtime::CacheMemory* cache,
                       std::vector<float>* logits) override {
    logits->clear();
    BatchIndex bi;
    DeviceIndex di{};
    absl::Status prepared = Prepare(batch, *cache, &bi, &di);
    // Ranks agree on whether to run, so that no rank waits in a collective
    // for a rank that failed to prepare (e.g. out of workspace memory).
    HC_RETURN_IF_ERROR(AgreeAcrossRanks(prepared));
    if (bi.num_tokens == 0) return absl::OkStatus();
    const int T = bi.num_tokens, D = config_.hidden_size;
    float* h = h_.as<float>();
    Embed(T, di.ids, h);
    if (config_.embedding_multiplier != 1.0f) {
      k_.elementwise->ScaleRows(T, D, config_.embedding_multiplier, {h, D});
    }
    // Each block: pre-norm, the block, (all-reduce,) residual add.
    for (const internal::LayerWeights& layer : weights_.layers) {
      if (layer.spec.mixer != MixerKind::kNone) {
        Norm(layer.mixer_norm, T);
        if (layer.spec.mixer == MixerKind::kAttention) {
          HC_RETURN_IF_ERROR(Attention(layer, bi, di, cache));
        } else {
          HC_RETURN_IF_ERROR(Mamba(layer, bi, di, cache));
        }
        HC_RETURN_IF_ERROR(ReduceAndAdd(T));
      }
      if (layer.spec.ffn != FfnKind::kNone) {
        Norm(layer.ffn_norm, T);
        if (layer.spec.ffn == FfnKind::kMlp) {
          Mlp(layer.mlp, T, x_.as<float>(), out_.as<float>());
        } else {
          HC_RETURN_IF_ERROR(Moe(layer.moe, T));
        }
        HC_RETURN_IF_ERROR(ReduceAndAdd(T));
      }
    }
    if (plan_.rank == 0 && !bi.logit_rows.empty()) HC_RETURN_IF_ERROR(Logits(bi, di, logits));
    return options_.backend->Synchronize();
  }

 private:
  absl::Status Prepare(const ForwardBatch& batch, const runtime::CacheMemory& cache, BatchIndex* bi,
                       DeviceIndex* di) {
    HC_RETURN_IF_ERROR(CheckCache(cache));
    HC_RETURN_IF_ERROR(Flatten(batch, cache.kv_layout(), cache.mamba_layout(), bi));
    if (bi->num_tokens == 0) return absl::OkStatus();
    HC_ASSIGN_OR_RETURN(*di, UploadIndex(*bi));
    return Reserve(bi->num_tokens);
  }

  // Returns `local` when it failed, else ABORTED when another rank failed.
  absl::Status AgreeAcrossRanks(const absl::Status& local) {
    if (plan_.tp_size == 1) return local;
    if (flag_.data() == nullptr) {
      HC_ASSIGN_OR_RETURN(flag_, DeviceBuffer::Create(options_.backend, sizeof(float)));
    }
    float failed = local.ok() ? 0.0f : 1.0f;
    HC_RETURN_IF_ERROR(options_.backend->CopyHostToDevice(flag_.data(), &failed, sizeof(float)));
    HC_RETURN_IF_ERROR(options_.communicator->AllReduceSum(flag_.as<float>(), 1));
    HC_RETURN_IF_ERROR(options_.backend->CopyDeviceToHost(&failed, flag_.data(), sizeof(float)));
    if (!local.ok()) return local;
    if (failed > 0.0f) return absl::AbortedError("another tensor-parallel rank failed to prepare");
    return absl::OkStatus();
  }

  absl::Status CheckCache(const runtime::CacheMemory& cache) const {
    const auto& kv = cache.kv_layout();
    const auto& m = cache.mamba_layout();
    if (cache.num_ranks() <= plan_.rank || kv.num_layers != config_.num_attention_layers() ||
        m.num_layers != config_.num_mamba_layers() ||
        (kv.num_layers > 0 && (kv.num_kv_heads != plan_.kv_heads ||
                               kv.head_dim != config_.head_dim || kv.dtype != plan_.kv_dtype)) ||
        (m.num_layers > 0 &&
         (m.conv_dim != plan_.conv_dim || m.conv_width != config_.mamba_d_conv ||
          m.num_heads != plan_.mamba_heads || m.head_dim != config_.mamba_d_head ||
          m.state_size != config_.mamba_d_state))) {
      return absl::InvalidArgumentError("cache memory layout does not match this model shard");
    }
    return absl::OkStatus();
  }

  absl::Status Flatten(const ForwardBatch& batch, const runtime::KvLayout& kv,
                       const runtime::MambaLayout& mamba, BatchIndex* bi) const {
    const bool has_attn = config_.num_attention_layers() > 0;
    const bool has_mamba = config_.num_mamba_layers() > 0;
    absl::flat_hash_set<int32_t> slots;
    bi->num_seqs = static_cast<int>(batch.seqs.size());
    bi->qsl.push_back(0);
    for (const SequenceInput& s : batch.seqs) {
      bi->max_blocks = std::max<int>(bi->max_blocks, s.block_table.size());
    }
    for (size_t si = 0; si < batch.seqs.size(); ++si) {
      const SequenceInput& s = batch.seqs[si];
      const int len = static_cast<int>(s.token_ids.size());
      const auto where = [&] { return absl::StrCat("sequence ", si, ": "); };
      if (len == 0) return absl::InvalidArgumentError(absl::StrCat(where(), "no new tokens"));
      if (s.num_computed_tokens < 0) {
        return absl::InvalidArgumentError(absl::StrCat(where(), "negative num_computed_tokens"));
      }
      const int ctx = s.num_computed_tokens + len;
      if (has_attn) {
        const int need = (ctx + kv.block_size - 1) / kv.block_size;
        if (static_cast<int>(s.block_table.size()) < need) {
          return absl::InvalidArgumentError(absl::StrCat(where(), "block table has ",
                                                         s.block_table.size(), " blocks, ", need,
                                                         " needed for ", ctx, " tokens"));
        }
        for (int b = 0; b < need; ++b) {
          if (s.block_table[b] < 0 || s.block_table[b] >= kv.num_blocks) {
            return absl::InvalidArgumentError(
                absl::StrCat(where(), "block id ", s.block_table[b], " out of range"));
          }
        }
      }
      if (has_mamba && (s.mamba_slot < 0 || s.mamba_slot >= mamba.num_slots ||
                        !slots.insert(s.mamba_slot).second)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where(), "Mamba slot ", s.mamba_slot, " out of range or repeated"));
      }
      for (int i = 0; i < len; ++i) {
        const int32_t id = s.token_ids[i];
        if (id < 0 || id >= config_.vocab_size) {
          return absl::InvalidArgumentError(
              absl::StrCat(where(), "token id ", id, " outside vocabulary"));
        }
        const int pos = s.num_computed_tokens + i;
        bi->ids.push_back(id);
        bi->positions.push_back(pos);
        bi->slot_mapping.push_back(has_attn ? s.block_table[pos / kv.block_size] * kv.block_size +
                                                  pos % kv.block_size
                                            : 0);
      }
      bi->all_decode = bi->all_decode && len == 1;
      bi->qsl.push_back(bi->qsl.back() + len);
      bi->computed.push_back(s.num_computed_tokens);
      bi->mamba_slots.push_back(s.mamba_slot);
      const size_t row = bi->block_tables.size();
      bi->block_tables.resize(row + bi->max_blocks, 0);
      std::copy(s.block_table.begin(), s.block_table.end(), bi->block_tables.begin() + row);
      if (s.need_logits) bi->logit_rows.push_back(bi->qsl.back() - 1);
    }
    bi->num_tokens = bi->qsl.back();
    return absl::OkStatus();
  }

  // One packed host-to-device copy of every index array.
  absl::StatusOr<DeviceIndex> UploadIndex(const BatchIndex& bi) {
    const std::vector<const std::vector<int32_t>*> parts = {
        &bi.ids,      &bi.positions,   &bi.slot_mapping, &bi.qsl,
        &bi.computed, &bi.mamba_slots, &bi.block_tables, &bi.logit_rows};
    packed_index_.clear();
    std::vector<size_t> offsets;
    for (const auto* p : parts) {
      offsets.push_back(packed_index_.size());
      packed_index_.insert(packed_index_.end(), p->begin(), p->end());
    }
    const size_t bytes = packed_index_.size() * sizeof(int32_t);
    if (index_.size() < bytes) {
      HC_ASSIGN_OR_RETURN(index_, DeviceBuffer::Create(options_.backend, bytes));
    }
    HC_RETURN_IF_ERROR(
        options_.backend->CopyHostToDevice(index_.data(), packed_index_.data(), bytes));
    const int32_t* base = index_.as<int32_t>();
    return DeviceIndex{base + offsets[0], base + offsets[1], base + offsets[2], base + offsets[3],
                       base + offsets[4], base + offsets[5], base + offsets[6], base + offsets[7]};
  }

  // Activation buffers for `tokens` rows (grow-only).
  absl::Status Reserve(int tokens) {
    if (tokens <= capacity_) return absl::OkStatus();
    const size_t T = tokens, D = config_.hidden_size, hd = config_.head_dim;
    const size_t ffn = std::max({static_cast<size_t>(plan_.intermediate),
                                 static_cast<size_t>(plan_.moe_intermediate),
                                 static_cast<size_t>(plan_.moe_shared_intermediate)});
    const size_t wide = std::max({static_cast<size_t>(plan_.in_proj_dim),
                                  (plan_.q_heads + 2 * plan_.kv_heads) * hd, 2 * ffn});
    const size_t mid = std::max({static_cast<size_t>(plan_.d_inner), plan_.q_heads * hd, ffn});
    const bool moe = config_.CountFfns(FfnKind::kMoe) > 0;
    auto make = [&](DeviceBuffer* buf, size_t floats) -> absl::Status {
      HC_ASSIGN_OR_RETURN(*buf, DeviceBuffer::Create(options_.backend,
                                                     std::max<size_t>(floats, 1) * sizeof(float)));
      return absl::OkStatus();
    };
    HC_RETURN_IF_ERROR(make(&h_, T * D));
    HC_RETURN_IF_ERROR(make(&x_, T * D));
    HC_RETURN_IF_ERROR(make(&out_, T * D));
    HC_RETURN_IF_ERROR(make(&wide_, T * wide));
    HC_RETURN_IF_ERROR(make(&mid_, T * mid));
    HC_RETURN_IF_ERROR(make(&conv_out_, T * plan_.conv_dim));
    HC_RETURN_IF_ERROR(make(&sum_sq_, T * std::max(plan_.mamba_groups, 1)));
    if (moe) {
      const size_t routed = T * config_.num_experts_per_tok;
      HC_RETURN_IF_ERROR(make(&router_logits_, T * config_.num_experts));
      HC_RETURN_IF_ERROR(make(&expert_in_, T * D));
      HC_RETURN_IF_ERROR(make(&expert_out_, T * D));
      HC_RETURN_IF_ERROR(make(&routing_, 2 * routed));  // rows (int32) | weights
    }
    capacity_ = tokens;
    return absl::OkStatus();
  }

  absl::Status Attention(const internal::LayerWeights& w, const BatchIndex& bi,
                         const DeviceIndex& di, runtime::CacheMemory* cache) {
    const int T = bi.num_tokens, D = config_.hidden_size, hd = config_.head_dim;
    const int q_cols = plan_.q_heads * hd, kv_cols = plan_.kv_heads * hd;
    const int qkv_cols = q_cols + 2 * kv_cols;
    float* qkv = wide_.as<float>();
    Linear(T, qkv_cols, D, x_.as<float>(), w.qkv, qkv);
    if (config_.use_rope) {
      k_.rope->ApplyRope({.num_tokens = T,
                          .positions = di.positions,
                          .head_dim = hd,
                          .rotary_dim = config_.rotary_dim(),
                          .theta = config_.rope_theta,
                          .q = {qkv, qkv_cols},
                          .num_q_heads = plan_.q_heads,
                          .k = {qkv + q_cols, qkv_cols},
                          .num_kv_heads = plan_.kv_heads});
    }
    const kernels::PagedKvCache kv{.k = cache->k(plan_.rank, w.group_index),
                                   .v = cache->v(plan_.rank, w.group_index),
                                   .dtype = cache->kv_layout().dtype,
                                   .block_size = cache->kv_layout().block_size,
                                   .num_kv_heads = plan_.kv_heads,
                                   .head_dim = hd};
    k_.attention->WriteKv(T, di.slot_mapping, {qkv + q_cols, qkv_cols},
                          {qkv + q_cols + kv_cols, qkv_cols}, kv);
    float* attn = mid_.as<float>();
    k_.attention->PagedAttention({.num_q_heads = plan_.q_heads,
                                  .scale = config_.attention_scale(),
                                  .q = {qkv, qkv_cols},
                                  .out = {attn, q_cols}},
                                 {.seqs = {bi.num_seqs, di.qsl},
                                  .num_computed_tokens = di.computed,
                                  .block_tables = di.block_tables,
                                  .max_blocks_per_seq = bi.max_blocks},
                                 kv);
    Linear(T, D, q_cols, attn, w.o, out_.as<float>());
    return absl::OkStatus();
  }

  absl::Status Mamba(const internal::LayerWeights& w, const BatchIndex& bi, const DeviceIndex& di,
                     runtime::CacheMemory* cache) {
    const int T = bi.num_tokens, D = config_.hidden_size;
    const int dl = plan_.d_inner, conv = plan_.conv_dim, in = plan_.in_proj_dim;
    const int gn = plan_.mamba_groups * config_.mamba_d_state;
    float* proj = wide_.as<float>();  // [T, in]: z | xBC | dt
    Linear(T, in, D, x_.as<float>(), w.in_proj, proj);
    float* xbc = conv_out_.as<float>();  // [T, conv]: x | B | C after conv + SiLU
    const kernels::Conv1dParams cp{.conv_dim = conv,
                                   .width = config_.mamba_d_conv,
                                   .weight = w.conv_w.as<float>(),
                                   .bias = config_.mamba_conv_bias ? w.conv_b.as<float>() : nullptr,
                                   .apply_silu = true,
                                   .state = cache->conv(plan_.rank, w.group_index)};
    const kernels::SsmParams sp{.num_heads = plan_.mamba_heads,
                                .head_dim = config_.mamba_d_head,
                                .state_size = config_.mamba_d_state,
                                .num_groups = plan_.mamba_groups,
                                .a_log = w.a_log.as<float>(),
                                .d = w.d.as<float>(),
                                .dt_bias = w.dt_bias.as<float>(),
                                .dt_min = config_.time_step_min_limit,
                                .dt_max = config_.time_step_max_limit,
                                .chunk_size = config_.mamba_chunk_size,
                                .state = cache->ssm(plan_.rank, w.group_index)};
    float* y = mid_.as<float>();  // [T, dl]
    const kernels::SsmTensors io{.x = {xbc, conv},
                                 .dt = {proj + dl + conv, in},
                                 .b = {xbc + dl, conv},
                                 .c = {xbc + dl + gn, conv},
                                 .y = {y, dl}};
    if (bi.all_decode) {
      k_.conv1d->CausalConv1dUpdate(cp, bi.num_seqs, di.mamba_slots, {proj + dl, in}, {xbc, conv});
      k_.mamba2->SelectiveStateUpdate(sp, bi.num_seqs, di.mamba_slots, io);
    } else {
      const kernels::VarlenBatch vb{bi.num_seqs, di.qsl};
      k_.conv1d->CausalConv1dVarlen(cp, vb, di.mamba_slots, {proj + dl, in}, {xbc, conv});
      k_.mamba2->SsdChunkScanVarlen(sp, vb, di.mamba_slots, io);
    }
    const int groups = plan_.mamba_groups;
    const kernels::GatedNormArgs gn_args{
        .num_tokens = T,
        .num_groups = groups,
        .group_size = dl / groups,
        .norm_count = plan_.split_single_group ? config_.d_inner() : dl / groups,
        .eps = config_.rms_norm_eps,
        .y = {y, dl},
        .z = {proj, in},
        .weight = w.norm.as<float>(),
        .out = {y, dl}};
    float* ss = sum_sq_.as<float>();
    k_.norm->GatedSumSquares(gn_args, ss);
    if (plan_.split_single_group) {
      HC_RETURN_IF_ERROR(options_.communicator->AllReduceSum(ss, static_cast<size_t>(T) * groups));
    }
    k_.norm->GatedNormApply(gn_args, ss);
    Linear(T, D, dl, y, w.out_proj, out_.as<float>());
    return absl::OkStatus();
  }

  // x_ = RmsNorm(h_) with `weight`.
  void Norm(const DeviceBuffer& weight, int T) {
    const int D = config_.hidden_size;
    k_.norm->RmsNorm({.num_tokens = T,
                      .dim = D,
                      .eps = config_.rms_norm_eps,
                      .x = {h_.as<float>(), D},
                      .weight = weight.as<float>(),
                      .out = {x_.as<float>(), D}});
  }

  // out[rows, D] = this rank's partial MLP output for in[rows, D] (wide_ and
  // mid_ are scratch).
  void Mlp(const internal::MlpWeights& w, int rows, const float* in, float* out) {
    const int D = config_.hidden_size, il = w.width;
    float* act = mid_.as<float>();
    if (config_.mlp_activation == MlpActivation::kSwiGlu) {
      float* gate_up = wide_.as<float>();
      Linear(rows, 2 * il, D, in, w.in, gate_up);
      k_.elementwise->SiluMul(rows, il, {gate_up, 2 * il}, {act, il});
    } else {
      Linear(rows, il, D, in, w.in, act);
      k_.elementwise->Relu2(rows, il, {act, il}, {act, il});
    }
    Linear(rows, D, il, act, w.down, out);
  }

  // out_ = shared MLP(x_) + the routed experts' weighted outputs. The router
  // logits come to the host, which routes (the same on every rank); each
  // expert runs on the rows of its tokens, gathered and scattered back.
  absl::Status Moe(const internal::MoeWeights& w, int T) {
    const int D = config_.hidden_size, E = config_.num_experts;
    const float* x = x_.as<float>();
    Mlp(w.shared, T, x, out_.as<float>());
    Gemm(T, E, D, x, w.router.as<float>(), router_logits_.as<float>());
    host_logits_.resize(static_cast<size_t>(T) * E);
    HC_RETURN_IF_ERROR(options_.backend->CopyDeviceToHost(
        host_logits_.data(), router_logits_.data(), host_logits_.size() * sizeof(float)));
    internal::RouteTokens(config_, host_logits_.data(), T, w.router_bias, &routing_host_);
    const size_t n = routing_host_.rows.size();
    int32_t* rows = routing_.as<int32_t>();
    float* weights = routing_.as<float>() + n;
    HC_RETURN_IF_ERROR(
        options_.backend->CopyHostToDevice(rows, routing_host_.rows.data(), n * sizeof(int32_t)));
    HC_RETURN_IF_ERROR(options_.backend->CopyHostToDevice(weights, routing_host_.weights.data(),
                                                          n * sizeof(float)));
    for (int e = 0; e < E; ++e) {
      const int begin = routing_host_.offsets[e];
      const int count = routing_host_.offsets[e + 1] - begin;
      if (count == 0) continue;
      k_.elementwise->EmbeddingGather(count, rows + begin, x, D, {expert_in_.as<float>(), D});
      Mlp(w.experts[e], count, expert_in_.as<float>(), expert_out_.as<float>());
      k_.elementwise->ScatterAddRows(count, D, rows + begin, weights + begin,
                                     {expert_out_.as<float>(), D}, {out_.as<float>(), D});
    }
    return absl::OkStatus();
  }

  // h += all-reduce(out): the row-parallel partial sums of every rank.
  absl::Status ReduceAndAdd(int T) {
    const int D = config_.hidden_size;
    if (plan_.tp_size > 1) {
      HC_RETURN_IF_ERROR(
          options_.communicator->AllReduceSum(out_.as<float>(), static_cast<size_t>(T) * D));
    }
    if (config_.residual_multiplier != 1.0f) {
      k_.elementwise->ScaleRows(T, D, config_.residual_multiplier, {out_.as<float>(), D});
    }
    k_.elementwise->AddRows(T, D, {out_.as<float>(), D}, {h_.as<float>(), D});
    return absl::OkStatus();
  }

  absl::Status Logits(const BatchIndex& bi, const DeviceIndex& di, std::vector<float>* logits) {
    const int R = static_cast<int>(bi.logit_rows.size());
    const int D = config_.hidden_size, V = config_.vocab_size;
    float* rows = x_.as<float>();  // R <= T rows: rows[i] = h[logit_rows[i]]
    k_.elementwise->EmbeddingGather(R, di.logit_rows, h_.as<float>(), D, {rows, D});
    k_.norm->RmsNorm({.num_tokens = R,
                      .dim = D,
                      .eps = config_.rms_norm_eps,
                      .x = {rows, D},
                      .weight = weights_.final_norm.as<float>(),
                      .out = {rows, D}});
    const size_t n = static_cast<size_t>(R) * V;
    if (logits_.size() < n * sizeof(float)) {
      HC_ASSIGN_OR_RETURN(logits_, DeviceBuffer::Create(options_.backend, n * sizeof(float)));
    }
    Linear(R, V, D, rows, weights_.lm_head_matrix(), logits_.as<float>());
    if (config_.logits_scaling != 1.0f) {
      k_.elementwise->ScaleRows(R, V, 1.0f / config_.logits_scaling, {logits_.as<float>(), V});
    }
    logits->resize(n);
    return options_.backend->CopyDeviceToHost(logits->data(), logits_.data(), n * sizeof(float));
  }

  // c[m, n] = a[m, k] * w[n, k]^T, all contiguous.
  void Gemm(int m, int n, int k, const float* a, const float* w, float* c) const {
    k_.gemm->Gemm({.m = m, .n = n, .k = k, .a = a, .lda = k, .b = w, .ldb = k, .c = c, .ldc = n});
  }

  // The same for a weight matrix, fp32 or bf16 (its dtype picks the GEMM).
  void Linear(int m, int n, int k, const float* a, const internal::Matrix& w, float* c) const {
    if (w.dtype == runtime::DType::kBF16) {
      k_.gemm->GemmBf16({.m = m,
                         .n = n,
                         .k = k,
                         .a = a,
                         .lda = k,
                         .b = static_cast<const uint16_t*>(w.data()),
                         .ldb = k,
                         .c = c,
                         .ldc = n});
      return;
    }
    Gemm(m, n, k, a, static_cast<const float*>(w.data()), c);
  }

  // out[t, :] = embed[ids[t], :] (rows of D).
  void Embed(int num_tokens, const int32_t* ids, float* out) const {
    const int D = config_.hidden_size;
    if (weights_.embed.dtype == runtime::DType::kBF16) {
      k_.elementwise->EmbeddingGatherBf16(
          num_tokens, ids, static_cast<const uint16_t*>(weights_.embed.data()), D, {out, D});
      return;
    }
    k_.elementwise->EmbeddingGather(num_tokens, ids,
                                    static_cast<const float*>(weights_.embed.data()), D, {out, D});
  }

  const HybridModelOptions options_;
  const ModelConfig config_;
  const ShardPlan plan_;
  const internal::ModelWeights weights_;
  const kernels::KernelSet& k_;
  // Workspace (backend memory), sized for capacity_ tokens.
  int capacity_ = 0;
  DeviceBuffer h_, x_, out_, wide_, mid_, conv_out_, sum_sq_, index_, logits_, flag_;
  DeviceBuffer router_logits_, expert_in_, expert_out_, routing_;  // MoE
  std::vector<int32_t> packed_index_;                              // host staging of UploadIndex
  std::vector<float> host_logits_;                                 // MoE router logits on the host
  internal::Routing routing_host_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<HybridModel>> HybridModel::Create(const HybridModelOptions& options,
                                                                 const ModelConfig& config,
                                                                 TensorLoader load) {
  if (options.backend == nullptr) return absl::InvalidArgumentError("HybridModel needs a backend");
  if (options.tp_size > 1 &&
      (options.communicator == nullptr || options.communicator->size() != options.tp_size ||
       options.communicator->rank() != options.rank)) {
    return absl::InvalidArgumentError("tp_size > 1 needs a communicator of that size and rank");
  }
  for (const auto& [what, dtype] :
       {std::pair{"weight", options.weight_dtype}, std::pair{"KV cache", options.kv_dtype}}) {
    if (dtype != runtime::DType::kF32 && dtype != runtime::DType::kBF16) {
      return absl::InvalidArgumentError(absl::StrCat(what, " dtype ", TorchDTypeName(dtype),
                                                     " is not supported (float32 or bfloat16)"));
    }
  }
  HC_ASSIGN_OR_RETURN(ShardPlan plan, ShardPlan::Create(config, options.tp_size, options.rank));
  plan.kv_dtype = options.kv_dtype;
  HC_ASSIGN_OR_RETURN(
      internal::ModelWeights weights,
      internal::LoadShardWeights(config, plan, load, options.backend, options.weight_dtype));
  return std::unique_ptr<HybridModel>(
      new HybridModelImpl(options, config, plan, std::move(weights)));
}

}  // namespace hc::model
