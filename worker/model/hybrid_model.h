// The forward pass of a hybrid Mamba2 + attention model (Bamba, Granite-4.0-H,
// Nemotron-H: GQA attention with RoPE or none, SwiGLU or relu² MLPs, top-k
// routed MoE), one tensor-parallel rank per HybridModel.
//
// A batch is a varlen list of sequences; each brings its new tokens, how many
// tokens of it are already cached, its block table (KV of the attention
// layers) and its Mamba state slot. Forward writes the new tokens' KV into the
// blocks and advances the Mamba state in the slot in place, so the caller
// (the cache groups) decides what is shared, copied or committed.
//
// Tensor parallel (Megatron / vLLM): every rank holds its shard and runs
// Forward on the same batch on its own thread; the ranks meet in the
// communicator's all-reduces (after out_proj / o_proj / down, and for the
// gated-norm statistics when one Mamba group is split). Rank 0 computes the
// logits (lm_head is replicated). MoE: the router is replicated and every rank
// routes the same tokens (on the host); each rank holds every expert's slice
// of the intermediate dimension, like the dense MLP.
//
// Thread-safety: a HybridModel is used by one thread at a time.
#ifndef HC_WORKER_MODEL_HYBRID_MODEL_H_
#define HC_WORKER_MODEL_HYBRID_MODEL_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/model/model_config.h"
#include "worker/model/tensor_source.h"
#include "worker/runtime/backend.h"
#include "worker/runtime/cache_memory.h"
#include "worker/runtime/communicator.h"

namespace hc::model {

// One sequence of a batch.
struct SequenceInput {
  std::span<const int32_t> token_ids;    // new tokens, at positions num_computed_tokens + i
  int num_computed_tokens = 0;           // tokens already in the KV blocks and Mamba state
  std::span<const int32_t> block_table;  // covers positions [0, num_computed + new tokens)
  runtime::SlotId mamba_slot = 0;        // read and written in place
  bool need_logits = false;              // logits of the last new token
};

struct ForwardBatch {
  std::vector<SequenceInput> seqs;
};

// How the model is split over tensor-parallel ranks and what each rank's cache
// tensors look like.
struct ShardPlan {
  int tp_size = 1;
  int rank = 0;
  // Local sizes.
  int q_heads = 0, kv_heads = 0, first_q_head = 0, first_kv_head = 0;
  int intermediate = 0;                                   // dense MLP width
  int moe_intermediate = 0, moe_shared_intermediate = 0;  // routed expert / shared MLP widths
  int mamba_heads = 0, mamba_groups = 0, d_inner = 0, conv_dim = 0, in_proj_dim = 0;
  bool split_single_group = false;  // G == 1 and tp > 1: norm statistics are all-reduced
  runtime::DType kv_dtype = runtime::DType::kF32;  // of the KV cache (KvLayout)

  // INVALID_ARGUMENT when the config cannot be split tp_size ways.
  static absl::StatusOr<ShardPlan> Create(const ModelConfig& config, int tp_size, int rank);

  runtime::KvLayout KvLayout(const ModelConfig& config, int num_blocks,
                             int block_size) const;  // kv_dtype
  runtime::MambaLayout MambaLayout(const ModelConfig& config, int num_slots) const;
};

// Returns the full (unsharded) fp32 tensor `name`, checking its shape
// (LoadF32's contract).
using TensorLoader = absl::FunctionRef<absl::StatusOr<std::vector<float>>(
    std::string_view name, const std::vector<int64_t>& shape)>;

struct HybridModelOptions {
  int tp_size = 1;
  int rank = 0;
  runtime::Backend* backend = nullptr;            // not owned; outlives the model
  runtime::Communicator* communicator = nullptr;  // not owned; required when tp_size > 1
  // Storage of the weight matrices (projections, embeddings, lm_head): kF32 or
  // kBF16 (converted from the loaded fp32 values, round-to-nearest-even; exact
  // for a bf16 checkpoint). Norm weights and Mamba vectors stay fp32.
  runtime::DType weight_dtype = runtime::DType::kF32;
  // Element type of the KV cache this model reads and writes: kF32 or kBF16.
  runtime::DType kv_dtype = runtime::DType::kF32;
};

class HybridModel {
 public:
  // Loads this rank's shard of every weight through `load` into backend memory.
  static absl::StatusOr<std::unique_ptr<HybridModel>> Create(const HybridModelOptions& options,
                                                             const ModelConfig& config,
                                                             TensorLoader load);
  // Same, reading the tensors from a checkpoint with LoadF32 (any dtype).
  static absl::StatusOr<std::unique_ptr<HybridModel>> CreateFromSource(
      const HybridModelOptions& options, const ModelConfig& config, const TensorSource& source);

  virtual ~HybridModel() = default;

  virtual const ModelConfig& config() const = 0;
  virtual const ShardPlan& plan() const = 0;

  // Runs the batch. `cache` holds this rank's KV and Mamba tensors at index
  // plan().rank, with the layouts of ShardPlan::KvLayout / MambaLayout.
  // On rank 0, `logits` receives [number of sequences with need_logits, vocab]
  // row-major in batch order; other ranks leave it empty.
  // INVALID_ARGUMENT for a bad batch (token id, slot or block out of range, a
  // block table too short, repeated slots) before anything is written.
  virtual absl::Status Forward(const ForwardBatch& batch, runtime::CacheMemory* cache,
                               std::vector<float>* logits) = 0;
};

}  // namespace hc::model

#endif  // HC_WORKER_MODEL_HYBRID_MODEL_H_
