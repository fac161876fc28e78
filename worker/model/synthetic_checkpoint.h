// Deterministic synthetic Bamba checkpoints for tests and benchmarks: a real
// Hugging Face layout (config.json, model.safetensors, generation_config.json,
// tokenizer.json, tokenizer_config.json, special_tokens_map.json) with seeded
// random weights and a BPE vocabulary trained on an embedded English corpus.
//
// Presets:
//   tiny   hidden 64, 4 layers (attention at layer 2), Mamba 4 heads x 32,
//          d_state 16, d_conv 4, chunk 16, 4 q / 2 kv heads (head_dim 16,
//          rotary 8), ~1K vocab, fp32, < 2 MB.
//   small  hidden 768, 10 layers (attention at 3 and 7), Mamba 24 heads x 64,
//          d_state 64, chunk 128, 12 q / 4 kv heads, ~8K vocab, fp32,
//          50-100M parameters.
// Both use n_groups = 1, partial_rotary_factor 0.5.
//   granite-tiny / granite-small   granitemoehybrid with the Bamba sizes: µP
//          multipliers, NoPE attention, 2 Mamba groups, dense shared MLP.
//   granite-moe-tiny   granitemoehybrid, RoPE attention, 8 experts (top 2) plus
//          the shared MLP on every layer.
//   nemotron-tiny      nemotron_h "M-M*EM-": relu² MLPs, NoPE attention, 2
//          Mamba groups, one MoE block (8 experts in 2 groups, top 2).
//   nemotron-small     nemotron_h "M-M-M*-M-M-M*-", hidden 768.
//   nemotron-nano-tiny nemotron-tiny's model (same weights seed) with
//          NVIDIA-Nemotron-Nano-v2's chat format: its real template and its
//          special tokens <SPECIAL_10>, <SPECIAL_11>, <SPECIAL_12> (EOS)
//          after the Granite ones (chat template "nemotron-nano-v2").
// The others use the Granite-4 chat format and special tokens <|end_of_text|>
// (bos = eos), <|pad|>, <|start_of_role|>, <|end_of_role|>, with the tokenizer
// of their size (tiny or small).
#ifndef HC_WORKER_MODEL_SYNTHETIC_CHECKPOINT_H_
#define HC_WORKER_MODEL_SYNTHETIC_CHECKPOINT_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/model_path.h"
#include "common/text/bpe_trainer.h"
#include "common/text/synthetic_tokenizer.h"
#include "worker/model/model_config.h"
#include "worker/runtime/cache_memory.h"

namespace hc::model {

struct SyntheticPreset {
  std::string name;
  // Complete except vocab_size and token ids, which come from the tokenizer.
  ModelConfig config;
  SyntheticTokenizerSpec tokenizer;  // common/text/synthetic_tokenizer.h
  runtime::DType dtype = runtime::DType::kF32;
  uint64_t seed = 0;
};

// One of the presets above; INVALID_ARGUMENT naming the preset otherwise.
absl::StatusOr<SyntheticPreset> GetSyntheticPreset(std::string_view name);

// The preset's trained tokenizer (deterministic).
BpeModel SyntheticTokenizer(const SyntheticPreset& preset);

// The preset's final ModelConfig (vocab_size = tokenizer size, token ids set).
absl::StatusOr<ModelConfig> SyntheticModelConfig(std::string_view preset);

struct SyntheticCheckpointOptions {
  // 0: one model.safetensors. Otherwise shards of at most this many bytes
  // plus model.safetensors.index.json.
  size_t max_shard_bytes = 0;
  // Stored dtype of every tensor (default: the preset's, float32); also
  // written as config.json's torch_dtype.
  std::optional<runtime::DType> dtype;
};

// Writes the checkpoint into `out_dir` (created if needed; existing files of
// the same names are overwritten). Same preset => byte-identical files.
absl::Status WriteSyntheticCheckpoint(std::string_view preset, const std::string& out_dir,
                                      const SyntheticCheckpointOptions& options = {});

// Everything WriteCheckpointFiles writes: `config_json` verbatim as
// config.json (it must describe `config`, whose vocab and token ids are the
// tokenizer's), the tokenizer files of `tokenizer` with `chat_template` (a
// ChatTemplate::ByName name), and seeded weights of ModelTensorSpecs(config)
// stored in `dtype` (max_shard_bytes as in SyntheticCheckpointOptions).
struct CheckpointFiles {
  ModelConfig config;
  std::string config_json;
  const BpeModel* tokenizer = nullptr;
  std::string chat_template;
  runtime::DType dtype = runtime::DType::kF32;
  uint64_t seed = 0;
  size_t max_shard_bytes = 0;
};
// Shared by WriteSyntheticCheckpoint and WriteScaledCheckpoint
// (scaled_checkpoint.h). Same inputs => byte-identical files.
absl::Status WriteCheckpointFiles(const CheckpointFiles& files, const std::string& out_dir);

// Generated checkpoints are cached under common/model_path.h's
// SyntheticModelDir(preset) (ModelCacheRoot() is defined there too).

// "synthetic:<preset>" -> a directory holding that checkpoint, generated on
// first use into ModelCacheRoot()/synthetic-<preset>-v<format> (written to a
// temporary directory, then renamed into place, so concurrent callers and
// crashes never see a partial checkpoint). Any other spec must be a directory
// with a config.json and is returned unchanged.
absl::StatusOr<std::string> ResolveModelPath(std::string_view spec);

}  // namespace hc::model

#endif  // HC_WORKER_MODEL_SYNTHETIC_CHECKPOINT_H_
