// All tensor-parallel ranks of one model in this process: one HybridModel
// shard per rank, a thread communicator between them, and Forward running the
// ranks concurrently (rank 0 on the calling thread, ranks 1.. on persistent
// threads owned by this object). This is what the engine drives on the CPU
// backend.
//
// Thread-safety: one thread calls Forward at a time.
#ifndef HC_WORKER_MODEL_TENSOR_PARALLEL_MODEL_H_
#define HC_WORKER_MODEL_TENSOR_PARALLEL_MODEL_H_

#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "worker/model/hybrid_model.h"

namespace hc::model {

// Creates the communicators of a tp-rank group (element r is rank r).
using CommunicatorFactory =
    std::function<absl::StatusOr<std::vector<std::unique_ptr<runtime::Communicator>>>(int tp)>;

struct TensorParallelModelOptions {
  int tp_size = 1;
  runtime::Backend* backend = nullptr;  // shared by all ranks; not owned; outlives the model
  // When non-empty: rank r runs on rank_backends[r] (one GPU per rank) and
  // `backend` is ignored. Size tp_size; not owned; outlive the model.
  std::vector<runtime::Backend*> rank_backends;
  // Default (empty): in-process thread communicators (host memory). GPU ranks
  // pass NCCL communicators over the rank backends' devices and streams.
  CommunicatorFactory make_communicators;
  // As HybridModelOptions: storage of the weight matrices and of the KV cache.
  runtime::DType weight_dtype = runtime::DType::kF32;
  runtime::DType kv_dtype = runtime::DType::kF32;
  // Intra-op threads per rank (SplitThreads; empty: none). Rank r >= 1
  // creates and binds an IntraOpPool of rank_threads[r] threads on its own
  // thread. Rank 0 runs on the thread that calls Forward, which binds its own
  // pool of rank_threads[0] (the engine thread: EngineOptions::intra_op_threads).
  // CPU backends only: a GPU rank's kernels do not use the pool.
  std::vector<int> rank_threads;
};

// `threads` intra-op threads split over `tp` ranks as evenly as possible
// (the first threads % tp ranks get one more), each rank at least 1 — so
// fewer threads than ranks still gives every rank its own thread.
// REQUIRES: threads >= 0, tp >= 1.
std::vector<int> SplitThreads(int threads, int tp);

class TensorParallelModel {
 public:
  static absl::StatusOr<std::unique_ptr<TensorParallelModel>> Create(
      const TensorParallelModelOptions& options, const ModelConfig& config, TensorLoader load);
  static absl::StatusOr<std::unique_ptr<TensorParallelModel>> CreateFromSource(
      const TensorParallelModelOptions& options, const ModelConfig& config,
      const TensorSource& source);

  int tp_size() const { return static_cast<int>(ranks_.size()); }
  // TensorParallelModelOptions::rank_threads (empty: no intra-op pools).
  const std::vector<int>& rank_threads() const { return rank_threads_; }
  const ModelConfig& config() const { return ranks_[0]->config(); }
  // Every rank's cache tensors have these (per-rank) layouts; create the
  // cache memory (BackendCacheMemory) over the same rank backends.
  runtime::KvLayout KvLayout(int num_blocks, int block_size) const;
  runtime::MambaLayout MambaLayout(int num_slots) const;

  // Runs the batch on every rank; `logits` as HybridModel::Forward on rank 0.
  // Returns the first failing rank's error.
  absl::Status Forward(const ForwardBatch& batch, runtime::CacheMemory* cache,
                       std::vector<float>* logits);

  ~TensorParallelModel();

 private:
  TensorParallelModel() = default;
  void StartWorkers();
  void WorkerLoop(int rank);

  std::vector<std::unique_ptr<runtime::Communicator>> comms_;
  std::vector<std::unique_ptr<HybridModel>> ranks_;
  std::vector<int> rank_threads_;     // TensorParallelModelOptions::rank_threads
  std::vector<std::thread> workers_;  // ranks 1..tp-1

  // The step handed to the workers: a new generation starts one step.
  absl::Mutex mu_;
  absl::CondVar changed_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;  // workers still running this step
  const ForwardBatch* batch_ ABSL_GUARDED_BY(mu_) = nullptr;
  runtime::CacheMemory* cache_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::vector<absl::Status> status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hc::model

#endif  // HC_WORKER_MODEL_TENSOR_PARALLEL_MODEL_H_
