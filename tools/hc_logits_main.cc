// hc-logits: the logits of the last token of a prompt, computed by the C++
// model on the CPU backend from a checkpoint directory (fp32), printed as one
// JSON list. Used by tests/python to compare the model with independent
// references.
//   hc-logits --model DIR|synthetic:<preset> --tokens 5,6,7 [--tp N] [--chunks 2,3]
// --chunks feeds the prompt as successive prefills of those lengths (the last
// chunk takes the rest), the way a cached conversation continues.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "worker/model/model_config_io.h"
#include "worker/model/safetensors.h"
#include "worker/model/synthetic_checkpoint.h"
#include "worker/model/tensor_parallel_model.h"
#include "worker/runtime/backend_cache_memory.h"
#include "worker/runtime/cpu_backend.h"

ABSL_FLAG(std::string, model, "", "checkpoint directory or synthetic:<preset>");
ABSL_FLAG(std::string, tokens, "", "comma-separated token ids of the prompt");
ABSL_FLAG(int, tp, 1, "tensor-parallel ranks (threads)");
ABSL_FLAG(std::string, chunks, "", "comma-separated prefill chunk lengths (default: one)");

namespace {

absl::StatusOr<std::vector<int32_t>> ParseInts(const std::string& text) {
  std::vector<int32_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int32_t v = 0;
    if (!absl::SimpleAtoi(part, &v)) {
      return absl::InvalidArgumentError(absl::StrCat("not an integer: ", part));
    }
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<std::vector<float>> Run() {
  HC_ASSIGN_OR_RETURN(const std::string dir,
                      hc::model::ResolveModelPath(absl::GetFlag(FLAGS_model)));
  HC_ASSIGN_OR_RETURN(const hc::model::ModelConfig config, hc::model::LoadModelConfig(dir));
  HC_ASSIGN_OR_RETURN(auto checkpoint, hc::model::SafetensorsCheckpoint::Open(dir));
  HC_ASSIGN_OR_RETURN(auto backend, hc::runtime::CreateCpuBackend());
  const int tp = absl::GetFlag(FLAGS_tp);
  HC_ASSIGN_OR_RETURN(auto model,
                      hc::model::TensorParallelModel::CreateFromSource(
                          {.tp_size = tp, .backend = backend.get()}, config, *checkpoint));
  HC_ASSIGN_OR_RETURN(const std::vector<int32_t> tokens, ParseInts(absl::GetFlag(FLAGS_tokens)));
  HC_ASSIGN_OR_RETURN(std::vector<int32_t> chunks, ParseInts(absl::GetFlag(FLAGS_chunks)));
  if (tokens.empty()) return absl::InvalidArgumentError("--tokens is empty");
  constexpr int kBlockSize = 16;
  const int blocks = static_cast<int>(tokens.size()) / kBlockSize + 1;
  HC_ASSIGN_OR_RETURN(auto cache, hc::runtime::BackendCacheMemory::Create(
                                      model->KvLayout(blocks, kBlockSize), model->MambaLayout(1),
                                      std::vector<hc::runtime::Backend*>(tp, backend.get())));
  HC_RETURN_IF_ERROR(cache->ZeroMambaSlot(0));
  std::vector<int32_t> table(blocks);
  for (int b = 0; b < blocks; ++b) table[b] = b;
  std::vector<float> logits;
  int done = 0;
  size_t next_chunk = 0;
  while (done < static_cast<int>(tokens.size())) {
    int len = static_cast<int>(tokens.size()) - done;
    if (next_chunk < chunks.size() && chunks[next_chunk] > 0 && chunks[next_chunk] < len) {
      len = chunks[next_chunk];
    }
    ++next_chunk;
    const std::span<const int32_t> part(tokens.data() + done, len);
    hc::model::ForwardBatch batch{{{.token_ids = part,
                                    .num_computed_tokens = done,
                                    .block_table = table,
                                    .mamba_slot = 0,
                                    .need_logits = true}}};
    HC_RETURN_IF_ERROR(model->Forward(batch, cache.get(), &logits));
    done += len;
  }
  return logits;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "hc-logits --model DIR --tokens 1,2,3 [--tp N] [--chunks a,b]: last-token logits as JSON");
  absl::ParseCommandLine(argc, argv);
  const absl::StatusOr<std::vector<float>> logits = Run();
  if (!logits.ok()) {
    std::fprintf(stderr, "hc-logits: %s\n", logits.status().ToString().c_str());
    return 1;
  }
  std::string out = "[";
  for (size_t i = 0; i < logits->size(); ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%.9g", i == 0 ? "" : ",", (*logits)[i]);
    out += buf;
  }
  std::printf("%s]\n", out.c_str());
  return 0;
}
