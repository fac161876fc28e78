// hc-checkpoint: writes a synthetic Bamba checkpoint.
//   hc-checkpoint --preset tiny|small --out DIR [--max_shard_mb N] [--dtype float32|bfloat16]
//   hc-checkpoint --preset tiny|small --resolve   (the cached copy that
//       --model synthetic:<preset> uses; generated once, printed)
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "worker/model/bamba_tensors.h"
#include "worker/model/synthetic_checkpoint.h"

ABSL_FLAG(std::string, preset, "tiny", "synthetic preset: tiny or small");
ABSL_FLAG(std::string, out, "", "output directory (created if needed)");
ABSL_FLAG(bool, resolve, false,
          "generate (once) and print the cache directory behind --model synthetic:<preset>");
ABSL_FLAG(int, max_shard_mb, 0, "if > 0, write shards of at most this many MiB plus an index");
ABSL_FLAG(std::string, dtype, "float32",
          "stored dtype of the tensors (and config.json torch_dtype): float32 or bfloat16");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "hc-checkpoint --preset tiny|small (--out DIR [--dtype float32|bfloat16] | --resolve)");
  absl::ParseCommandLine(argc, argv);
  const std::string out = absl::GetFlag(FLAGS_out);
  const std::string preset = absl::GetFlag(FLAGS_preset);
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
  const absl::Status st = hc::model::WriteSyntheticCheckpoint(preset, out, options);
  if (!st.ok()) {
    std::fprintf(stderr, "hc-checkpoint: %s\n", st.ToString().c_str());
    return 1;
  }
  auto config = hc::model::SyntheticModelConfig(preset);
  const long long params =
      config.ok() ? hc::model::CountParameters(hc::model::BambaTensorSpecs(*config)) : -1;
  std::printf("wrote %s checkpoint to %s (%lld parameters, vocab %d)\n", preset.c_str(),
              out.c_str(), params, config.ok() ? config->vocab_size : -1);
  return 0;
}
