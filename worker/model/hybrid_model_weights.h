// Internal to worker/model: one rank's shard of the model weights in backend
// memory, and how it is cut from the full checkpoint tensors.
#ifndef HC_WORKER_MODEL_HYBRID_MODEL_WEIGHTS_H_
#define HC_WORKER_MODEL_HYBRID_MODEL_WEIGHTS_H_

#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/hybrid_model.h"
#include "worker/runtime/backend.h"

namespace hc::model::internal {

using runtime::DeviceBuffer;

// A weight matrix [out, in] row-major in backend memory, fp32 or bf16 (the
// model's weight dtype); HybridModelImpl::Linear dispatches on `dtype`.
struct Matrix {
  DeviceBuffer buf;
  runtime::DType dtype = runtime::DType::kF32;
  const void* data() const { return buf.data(); }
};

// A dense MLP shard of local width `width`: SwiGLU keeps [2 * width, D] (gate
// rows then up rows), relu² keeps up [width, D]; down is [D, width].
struct MlpWeights {
  int width = 0;
  Matrix in;
  Matrix down;
};

// A MoE block: the router (replicated, [E, D]), Nemotron-H's correction bias
// (host memory: routing runs on the host), every expert's MLP shard and the
// shared MLP shard.
struct MoeWeights {
  DeviceBuffer router;
  std::vector<float> router_bias;  // [E] or empty
  std::vector<MlpWeights> experts;
  MlpWeights shared;
};

// Shapes are per rank (ShardPlan sizes); every matrix is [out, in] row-major.
struct LayerWeights {
  LayerSpec spec;
  int group_index = 0;      // index among the attention (or Mamba) layers
  DeviceBuffer mixer_norm;  // [D] (empty without a mixer)
  DeviceBuffer ffn_norm;    // [D] (empty without a feed-forward block)
  MlpWeights mlp;           // FfnKind::kMlp
  MoeWeights moe;           // FfnKind::kMoe
  // Attention.
  Matrix qkv;  // [(q_l + 2 kv_l) * head_dim, D]: q rows, k rows, v rows
  Matrix o;    // [D, q_l * head_dim]
  // Mamba2.
  Matrix in_proj;        // [in_l, D]: z_l | x_l | B_l | C_l | dt_l
  DeviceBuffer conv_w;   // [conv_l, W]: x_l | B_l | C_l channels
  DeviceBuffer conv_b;   // [conv_l] (empty when mamba_conv_bias is false)
  DeviceBuffer a_log;    // [H_l]
  DeviceBuffer d;        // [H_l]
  DeviceBuffer dt_bias;  // [H_l]
  DeviceBuffer norm;     // [d_l]
  Matrix out_proj;       // [D, d_l]
};

struct ModelWeights {
  Matrix embed;             // [V, D], replicated
  DeviceBuffer final_norm;  // [D]
  Matrix lm_head;           // [V, D]; empty when tied to embed or on ranks != 0
  std::vector<LayerWeights> layers;
  const Matrix& lm_head_matrix() const { return lm_head.data() != nullptr ? lm_head : embed; }
};

// Matrices (projections, MLP / expert weights, embeddings, lm_head) are stored
// as `weight_dtype` (kF32 or kBF16); norms, Mamba vectors, conv weights and the
// MoE router stay fp32.
absl::StatusOr<ModelWeights> LoadShardWeights(const ModelConfig& config, const ShardPlan& plan,
                                              TensorLoader load, runtime::Backend* backend,
                                              runtime::DType weight_dtype);

}  // namespace hc::model::internal

#endif  // HC_WORKER_MODEL_HYBRID_MODEL_WEIGHTS_H_
