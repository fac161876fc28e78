// A small random checkpoint shaped by a released config.json: every key of the
// real file is kept (the layer pattern, multipliers, routing, biases, token
// conventions, Python's Infinity literals, keys we ignore), only the size keys
// shrink, so the real loading code runs on the real key set. The tokenizer is
// the synthetic tiny one of the architecture's family (vocab ~1K); vocab_size
// and the token ids follow it.
//
// Scaled sizes (D = hidden_size):
//   attention: KV heads min(real, 2), query heads KV x min(real ratio, 2),
//     head_dim 16 where the file states it (head_dim / attention_head_dim),
//     else D / heads; the rotary share of the head is kept.
//   Mamba2: groups min(real, 2), 2 heads per group, head dim expand*D/heads
//     (Bamba, Granite: they require it) or 16 (Nemotron-H), d_state
//     min(real, 16), chunk min(real, 16) (so short prompts span chunks).
//   MLP width 2D; MoE: experts min(real, 8), top-k min(real, 2), groups and
//     top groups kept where they still divide, expert width D/2, shared 3D/4.
//   layers: the first `max_layers` of the pattern (0 keeps all).
#ifndef HC_WORKER_MODEL_SCALED_CHECKPOINT_H_
#define HC_WORKER_MODEL_SCALED_CHECKPOINT_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "worker/model/model_config.h"
#include "worker/runtime/cache_memory.h"

namespace hc::model {

struct ScaleDownOptions {
  int hidden_size = 64;  // a multiple of 16
  int max_layers = 0;    // keep the first this many layers of the pattern; 0 keeps all
  runtime::DType dtype = runtime::DType::kF32;  // stored weights; config.json torch_dtype
  size_t max_shard_bytes = 0;                   // as SyntheticCheckpointOptions
  uint64_t seed = 0x5CA1ED;
};

// The scaled config.json text for `real_json` (a config.json our loader
// accepts; its errors otherwise), with vocab_size `vocab_size` and the given
// token ids. INVALID_ARGUMENT for a bad option.
absl::StatusOr<std::string> ScaledConfigJson(std::string_view real_json,
                                             const ScaleDownOptions& options, int vocab_size,
                                             int bos_token_id, int eos_token_id, int pad_token_id);

// Reads `config_path` (a config.json, or a directory holding one) and writes
// the scaled checkpoint into `out_dir`; returns the scaled ModelConfig as our
// loader reads it back. Same inputs => byte-identical files.
absl::StatusOr<ModelConfig> WriteScaledCheckpoint(const std::string& config_path,
                                                  const std::string& out_dir,
                                                  const ScaleDownOptions& options = {});

}  // namespace hc::model

#endif  // HC_WORKER_MODEL_SCALED_CHECKPOINT_H_
