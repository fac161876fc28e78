// The tensors of a checkpoint: Hugging Face names and shapes for a
// ModelConfig of each architecture (docs/model-facts.md). Used by the
// checkpoint generator and by the loader, so both agree on the real names.
#ifndef HC_WORKER_MODEL_MODEL_TENSORS_H_
#define HC_WORKER_MODEL_MODEL_TENSORS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "worker/model/model_config.h"
#include "worker/model/safetensors.h"

namespace hc::model {

// Names of one architecture's tensors:
//   bamba:            model.embed_tokens, model.layers.{i}.{input_layernorm, pre_ff_layernorm,
//                     mamba.*, self_attn.*, feed_forward.{gate,up,down}_proj},
//                     model.final_layernorm, lm_head
//   granitemoehybrid: model.embed_tokens, model.layers.{i}.{input_layernorm,
//                     post_attention_layernorm, mamba.*, self_attn.*,
//                     shared_mlp.{input_linear,output_linear},
//                     block_sparse_moe.{router.layer,input_linear,output_linear}}, model.norm,
//                     lm_head
//   nemotron_h:       backbone.embeddings, backbone.layers.{i}.{norm, mixer.*}, backbone.norm_f,
//                     lm_head (NVIDIA's checkpoints say "backbone."; transformers renames it to
//                     "model.", and checkpoints saved by transformers 5 use that: `root` picks)
class TensorNames {
 public:
  // `root`: "backbone." or "model." for nemotron_h (default "backbone."); ignored otherwise.
  explicit TensorNames(const ModelConfig& config, std::string_view root = {});

  std::string Embed() const;
  std::string FinalNorm() const;
  std::string LmHead() const { return "lm_head.weight"; }
  std::string MixerNorm(int layer) const;
  std::string FfnNorm(int layer) const;
  // "<layer>.mamba.<suffix>" / "<layer>.mixer.<suffix>", e.g. Mamba(3, "A_log").
  std::string Mamba(int layer, std::string_view suffix) const;
  // The attention projections, e.g. Attention(1, "q_proj.weight").
  std::string Attention(int layer, std::string_view suffix) const;
  // Dense MLP (and the shared MLP of a MoE block). Bamba: gate, up, down;
  // Granite: gate_up (fused input_linear [2I, D], gate rows first), down;
  // Nemotron-H: up, down.
  std::string MlpGate(int layer) const;
  std::string MlpUp(int layer) const;
  std::string MlpGateUp(int layer) const;
  std::string MlpDown(int layer) const;
  // MoE: router [E, D]; Nemotron-H's router correction bias [E]; Granite's
  // stacked experts (ExpertGateUp [E, 2I, D], ExpertDown [E, D, I]); Nemotron-H's
  // per-expert tensors (ExpertUp(l, e) [I, D], ExpertDown(l, e) [D, I]).
  std::string Router(int layer) const;
  std::string RouterBias(int layer) const;
  std::string ExpertGateUp(int layer) const;
  std::string ExpertUp(int layer, int expert) const;
  std::string ExpertDown(int layer, int expert = -1) const;

 private:
  std::string LayerPrefix(int layer) const;
  Architecture arch_;
  std::string root_;
};

// Every tensor of the checkpoint, in a stable order (embedding, layers in
// order, final norm, lm_head unless tied), with dtype `dtype` (Nemotron-H's
// router weight and correction bias are always F32, as NVIDIA stores them).
std::vector<TensorSpec> ModelTensorSpecs(const ModelConfig& config,
                                         runtime::DType dtype = runtime::DType::kF32);

int64_t CountParameters(const std::vector<TensorSpec>& specs);

}  // namespace hc::model

#endif  // HC_WORKER_MODEL_MODEL_TENSORS_H_
