// hc-checkpoint: writes a synthetic checkpoint of one architecture.
//   hc-checkpoint [--arch bamba|granitemoehybrid|nemotron_h] --preset tiny|small --out DIR
//       [--max_shard_mb N] [--dtype float32|bfloat16]
//   hc-checkpoint ... --resolve   (the cached copy that --model synthetic:<preset> uses;
//       generated once, printed)
// --arch granitemoehybrid --preset tiny is the preset "granite-tiny" (and
// nemotron_h: "nemotron-tiny"); a full preset name (granite-moe-tiny) is also
// accepted as --preset. Presets: worker/model/synthetic_checkpoint.h.
//   hc-checkpoint --from_config PATH --out DIR [--scaled_hidden 64] [--scaled_layers N]
//       [--dtype ...]: a small random checkpoint keeping every key and the layer
//       pattern of a released config.json, its sizes shrunk
//       (worker/model/scaled_checkpoint.h).
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "worker/model/model_tensors.h"
#include "worker/model/scaled_checkpoint.h"
#include "worker/model/synthetic_checkpoint.h"

ABSL_FLAG(std::string, arch, "bamba", "architecture: bamba, granitemoehybrid or nemotron_h");
ABSL_FLAG(std::string, preset, "tiny",
          "synthetic preset: tiny or small (or a full name such as granite-moe-tiny)");
ABSL_FLAG(std::string, out, "", "output directory (created if needed)");
ABSL_FLAG(bool, resolve, false,
          "generate (once) and print the cache directory behind --model synthetic:<preset>");
ABSL_FLAG(int, max_shard_mb, 0, "if > 0, write shards of at most this many MiB plus an index");
ABSL_FLAG(std::string, from_config, "",
          "a released config.json (or its directory): write a scaled-down random checkpoint "
          "with its keys and layer pattern instead of a preset");
ABSL_FLAG(int, scaled_hidden, 64,
          "--from_config: hidden_size of the scaled model (multiple of 16)");
ABSL_FLAG(int, scaled_layers, 0,
          "--from_config: keep the first N layers of the pattern (0 keeps all)");
ABSL_FLAG(std::string, dtype, "float32",
          "stored dtype of the tensors (and config.json torch_dtype): float32 or bfloat16");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "hc-checkpoint [--arch bamba|granitemoehybrid|nemotron_h] --preset tiny|small "
      "(--out DIR [--dtype float32|bfloat16] | --resolve)\n"
      "hc-checkpoint --from_config PATH --out DIR [--scaled_hidden 64] [--scaled_layers N]");
  absl::ParseCommandLine(argc, argv);
  const std::string out = absl::GetFlag(FLAGS_out);
  const std::string arch = absl::GetFlag(FLAGS_arch);
  std::string preset = absl::GetFlag(FLAGS_preset);
  std::string prefix;
  if (arch == "granitemoehybrid") {
    prefix = "granite-";
  } else if (arch == "nemotron_h") {
    prefix = "nemotron-";
  } else if (arch != "bamba") {
    std::fprintf(stderr,
                 "hc-checkpoint: --arch \"%s\" is not one of bamba, granitemoehybrid, "
                 "nemotron_h\n",
                 arch.c_str());
    return 2;
  }
  if (preset.rfind(prefix, 0) != 0) preset = prefix + preset;
  if (absl::GetFlag(FLAGS_resolve)) {
    const absl::StatusOr<std::string> dir = hc::model::ResolveModelPath("synthetic:" + preset);
    if (!dir.ok()) {
      std::fprintf(stderr, "hc-checkpoint: %s\n", dir.status().ToString().c_str());
      return 1;
    }
    std::printf("%s\n", dir->c_str());
    return 0;
  }
  if (out.empty()) {
    std::fprintf(stderr, "hc-checkpoint: --out DIR is required\n");
    return 2;
  }
  hc::model::SyntheticCheckpointOptions options;
  options.max_shard_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_shard_mb)) << 20;
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  if (dtype == "float32") {
    options.dtype = hc::runtime::DType::kF32;
  } else if (dtype == "bfloat16") {
    options.dtype = hc::runtime::DType::kBF16;
  } else {
    std::fprintf(stderr, "hc-checkpoint: --dtype=%s: expected float32 or bfloat16\n",
                 dtype.c_str());
    return 2;
  }
  if (const std::string from = absl::GetFlag(FLAGS_from_config); !from.empty()) {
    hc::model::ScaleDownOptions scale;
    scale.hidden_size = absl::GetFlag(FLAGS_scaled_hidden);
    scale.max_layers = absl::GetFlag(FLAGS_scaled_layers);
    scale.dtype = *options.dtype;
    scale.max_shard_bytes = options.max_shard_bytes;
    const auto config = hc::model::WriteScaledCheckpoint(from, out, scale);
    if (!config.ok()) {
      std::fprintf(stderr, "hc-checkpoint: %s\n", config.status().ToString().c_str());
      return 1;
    }
    std::printf(
        "wrote a scaled %s checkpoint of %s to %s (%d layers, %lld parameters, vocab %d)\n",
        std::string(hc::model::ModelTypeName(config->architecture)).c_str(), from.c_str(),
        out.c_str(), config->num_hidden_layers,
        static_cast<long long>(hc::model::CountParameters(hc::model::ModelTensorSpecs(*config))),
        config->vocab_size);
    return 0;
  }
  const absl::Status st = hc::model::WriteSyntheticCheckpoint(preset, out, options);
  if (!st.ok()) {
    std::fprintf(stderr, "hc-checkpoint: %s\n", st.ToString().c_str());
    return 1;
  }
  auto config = hc::model::SyntheticModelConfig(preset);
  const long long params =
      config.ok() ? hc::model::CountParameters(hc::model::ModelTensorSpecs(*config)) : -1;
  std::printf("wrote %s checkpoint to %s (%lld parameters, vocab %d)\n", preset.c_str(),
              out.c_str(), params, config.ok() ? config->vocab_size : -1);
  return 0;
}
