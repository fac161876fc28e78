#include "worker/engine/worker_stack.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/intra_op.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "worker/model/model_config_io.h"
#include "worker/model/safetensors.h"
#include "worker/model/synthetic_checkpoint.h"
#include "worker/model/weight_dtype.h"

namespace hc::engine {

absl::StatusOr<std::unique_ptr<WorkerStack>> WorkerStack::Create(const WorkerStackOptions& o) {
  runtime::BackendKind kind = runtime::BackendKind::kCpu;
  if (o.device == "auto") {
    kind = runtime::BuiltWithCuda() && runtime::CudaDevicesAvailable() >= o.tp
               ? runtime::BackendKind::kCuda
               : runtime::BackendKind::kCpu;
  } else {
    HC_ASSIGN_OR_RETURN(kind, runtime::ParseBackendKind(o.device));
  }
  if (o.tp < 1) return absl::InvalidArgumentError("--tp must be >= 1");
  // The upper bound keeps a typo from asking the OS for millions of threads
  // (std::thread then throws and the process aborts): far above any CPU count.
  constexpr int kMaxThreads = 1024;
  if (o.threads < 0 || o.threads > kMaxThreads) {
    return absl::InvalidArgumentError(absl::StrCat("--threads must be between 0 and ", kMaxThreads,
                                                   " (0: every CPU this process may use), got ",
                                                   o.threads));
  }
  if (o.mamba_slots < 1 || o.block_size < 1 || o.max_batch_tokens < 1 || o.max_running < 1) {
    return absl::InvalidArgumentError(
        "mamba_slots, block_size, max_batch_tokens and max_running must be >= 1");
  }
  auto stack = std::unique_ptr<WorkerStack>(new WorkerStack());
  HC_ASSIGN_OR_RETURN(stack->model_dir_, model::ResolveModelPath(o.model));
  HC_ASSIGN_OR_RETURN(const model::ModelConfig config, model::LoadModelConfig(stack->model_dir_));
  HC_ASSIGN_OR_RETURN(auto checkpoint, model::SafetensorsCheckpoint::Open(stack->model_dir_));
  HC_ASSIGN_OR_RETURN(
      const model::ModelDTypes dtypes,
      model::ResolveModelDTypes(o.dtype, o.kv_dtype, stack->model_dir_, *checkpoint));
  HC_ASSIGN_OR_RETURN(stack->devices_, runtime::CreateDeviceGroup({.kind = kind, .tp = o.tp}));
  // Intra-op pools: CPU only (a CUDA rank's kernels run on its GPU).
  const bool cpu = kind == runtime::BackendKind::kCpu;
  const int available_cpus = AvailableCpus();
  const int threads = o.threads > 0 ? o.threads : available_cpus;
  const std::vector<int> rank_threads =
      cpu ? model::SplitThreads(threads, o.tp) : std::vector<int>();
  HC_ASSIGN_OR_RETURN(stack->model_,
                      model::TensorParallelModel::CreateFromSource(
                          {.tp_size = o.tp,
                           .rank_backends = stack->devices_->rank_backends(),
                           .make_communicators = stack->devices_->communicator_factory(),
                           .weight_dtype = dtypes.weights,
                           .kv_dtype = dtypes.kv,
                           .rank_threads = rank_threads},
                          config, *checkpoint));

  // KV blocks: given, or as many as fit in kv_cache_bytes (K and V of every
  // attention layer on every rank, in the KV dtype).
  int kv_blocks = o.kv_blocks;
  if (kv_blocks <= 0) {
    const runtime::KvLayout one = stack->model_->KvLayout(1, o.block_size);
    const int64_t block_bytes = static_cast<int64_t>(one.BlockElems()) * 2 * one.num_layers * o.tp *
                                static_cast<int64_t>(runtime::DTypeSize(one.dtype));
    kv_blocks = static_cast<int>(
        std::max<int64_t>(1, o.kv_cache_bytes / std::max<int64_t>(1, block_bytes)));
  }
  HC_ASSIGN_OR_RETURN(stack->memory_, stack->devices_->CreateCacheMemory(
                                          stack->model_->KvLayout(kv_blocks, o.block_size),
                                          stack->model_->MambaLayout(o.mamba_slots)));
  HC_ASSIGN_OR_RETURN(stack->cache_,
                      cache::ConversationCache::Create({.memory = stack->memory_.get()}));
  stack->runner_ = std::make_unique<HybridModelRunner>(stack->model_.get(), stack->memory_.get());

  const std::string tokenizer_path = stack->model_dir_ + "/tokenizer.json";
  if (std::filesystem::exists(tokenizer_path)) {
    HC_ASSIGN_OR_RETURN(stack->tokenizer_, Tokenizer::FromFile(tokenizer_path));
  }
  stack->max_model_len_ = o.max_model_len > 0 ? o.max_model_len : config.max_position_embeddings;
  if (stack->max_model_len_ <= 1) return absl::InvalidArgumentError("max_model_len must be > 1");

  EngineOptions eo;
  eo.model = stack->runner_.get();
  eo.cache = stack->cache_.get();
  eo.metrics = o.metrics;
  eo.max_batch_tokens = o.max_batch_tokens;
  eo.max_running = o.max_running;
  eo.max_waiting = o.max_waiting;
  eo.max_model_len = stack->max_model_len_;
  eo.eos_token_id = config.eos_token_id;
  eo.intra_op_threads = cpu ? rank_threads[0] : 1;
  if (const Tokenizer* tok = stack->tokenizer_.get()) {
    // What the router's codec decodes for a reply: special tokens add nothing.
    eo.token_bytes = [tok](int32_t id) -> std::string_view {
      return tok->IsSpecial(id) ? std::string_view() : tok->TokenBytes(id);
    };
  }
  HC_ASSIGN_OR_RETURN(stack->engine_, Engine::Create(eo));
  const runtime::KvLayout& kv = stack->memory_->kv_layout();
  const runtime::MambaLayout& mamba = stack->memory_->mamba_layout();
  const size_t cache_bytes =
      o.tp * (2 * kv.BlockElems() * kv.num_blocks * kv.num_layers * runtime::DTypeSize(kv.dtype) +
              (mamba.ConvSlotElems() + mamba.SsmSlotElems()) * mamba.num_slots * mamba.num_layers *
                  sizeof(float));
  HC_LOG(INFO) << "worker stack: model " << stack->model_dir_ << ", device "
               << (kind == runtime::BackendKind::kCuda ? "cuda" : "cpu") << ", tp " << o.tp
               << ", weights " << kernels::TorchDTypeName(dtypes.weights) << ", KV cache "
               << kernels::TorchDTypeName(dtypes.kv) << ", " << kv_blocks << " KV blocks of "
               << o.block_size << " tokens, " << o.mamba_slots << " Mamba slots, cache memory "
               << (cache_bytes >> 20) << " MiB";
  if (cpu) {
    HC_LOG(INFO) << "intra-op threads: " << threads
                 << (o.threads > 0 ? " (--threads)" : " (--threads 0: available CPUs)")
                 << ", per rank [" << absl::StrJoin(rank_threads, ", ")
                 << "]; available CPUs (affinity, cgroup quota): " << available_cpus;
  } else if (o.threads > 0) {
    HC_LOG(INFO) << "--threads " << o.threads << " ignored: the CUDA backend runs on its GPUs";
  }
  return stack;
}

WorkerStack::~WorkerStack() {
  if (engine_) engine_->Stop();
}

}  // namespace hc::engine
