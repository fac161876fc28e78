#include "worker/model/tensor_parallel_model.h"

#include <algorithm>
#include <optional>
#include <thread>
#include <utility>

#include "common/intra_op.h"
#include "common/status_macros.h"

namespace hc::model {

absl::StatusOr<std::unique_ptr<TensorParallelModel>> TensorParallelModel::Create(
    const TensorParallelModelOptions& options, const ModelConfig& config, TensorLoader load) {
  if (options.tp_size < 1) return absl::InvalidArgumentError("tp_size must be positive");
  if (!options.rank_threads.empty() &&
      (static_cast<int>(options.rank_threads.size()) != options.tp_size ||
       *std::min_element(options.rank_threads.begin(), options.rank_threads.end()) < 1)) {
    return absl::InvalidArgumentError("rank_threads must have tp_size entries, each >= 1");
  }
  if (!options.rank_backends.empty() &&
      static_cast<int>(options.rank_backends.size()) != options.tp_size) {
    return absl::InvalidArgumentError("rank_backends must have tp_size entries");
  }
  auto model = std::unique_ptr<TensorParallelModel>(new TensorParallelModel());
  if (options.make_communicators) {
    HC_ASSIGN_OR_RETURN(model->comms_, options.make_communicators(options.tp_size));
    if (static_cast<int>(model->comms_.size()) != options.tp_size) {
      return absl::InvalidArgumentError("communicator factory returned the wrong group size");
    }
  } else {
    model->comms_ = runtime::CreateThreadCommunicators(options.tp_size);
  }
  for (int r = 0; r < options.tp_size; ++r) {
    runtime::Backend* backend =
        options.rank_backends.empty() ? options.backend : options.rank_backends[r];
    HC_ASSIGN_OR_RETURN(auto rank, HybridModel::Create({.tp_size = options.tp_size,
                                                        .rank = r,
                                                        .backend = backend,
                                                        .communicator = model->comms_[r].get(),
                                                        .weight_dtype = options.weight_dtype,
                                                        .kv_dtype = options.kv_dtype},
                                                       config, load));
    model->ranks_.push_back(std::move(rank));
  }
  model->rank_threads_ = options.rank_threads;
  model->StartWorkers();
  return model;
}

std::vector<int> SplitThreads(int threads, int tp) {
  std::vector<int> split(tp, 1);
  if (threads <= tp) return split;
  for (int r = 0; r < tp; ++r) split[r] = threads / tp + (r < threads % tp ? 1 : 0);
  return split;
}

void TensorParallelModel::StartWorkers() {
  {
    absl::MutexLock lock(&mu_);
    status_.assign(ranks_.size(), absl::OkStatus());
  }
  for (int r = 1; r < tp_size(); ++r) workers_.emplace_back([this, r] { WorkerLoop(r); });
}

TensorParallelModel::~TensorParallelModel() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    changed_.SignalAll();
  }
  for (std::thread& t : workers_) t.join();
}

void TensorParallelModel::WorkerLoop(int rank) {
  // This rank's intra-op pool: created, bound and destroyed on its thread.
  std::optional<IntraOpPool> pool;
  if (!rank_threads_.empty() && rank_threads_[rank] > 1) pool.emplace(rank_threads_[rank]);
  const ScopedIntraOpPool bind(pool.has_value() ? &*pool : nullptr);
  uint64_t seen = 0;
  std::vector<float> unused;  // only rank 0 produces logits
  while (true) {
    const ForwardBatch* batch;
    runtime::CacheMemory* cache;
    {
      absl::MutexLock lock(&mu_);
      while (!stop_ && generation_ == seen) changed_.Wait(&mu_);
      if (stop_) return;
      seen = generation_;
      batch = batch_;
      cache = cache_;
    }
    absl::Status status = ranks_[rank]->Forward(*batch, cache, &unused);
    absl::MutexLock lock(&mu_);
    status_[rank] = std::move(status);
    if (--pending_ == 0) changed_.SignalAll();
  }
}

runtime::KvLayout TensorParallelModel::KvLayout(int num_blocks, int block_size) const {
  return ranks_[0]->plan().KvLayout(config(), num_blocks, block_size);
}

runtime::MambaLayout TensorParallelModel::MambaLayout(int num_slots) const {
  return ranks_[0]->plan().MambaLayout(config(), num_slots);
}

absl::Status TensorParallelModel::Forward(const ForwardBatch& batch, runtime::CacheMemory* cache,
                                          std::vector<float>* logits) {
  {
    absl::MutexLock lock(&mu_);
    batch_ = &batch;
    cache_ = cache;
    pending_ = tp_size() - 1;
    ++generation_;
    changed_.SignalAll();
  }
  const absl::Status status0 = ranks_[0]->Forward(batch, cache, logits);
  absl::MutexLock lock(&mu_);
  while (pending_ > 0) changed_.Wait(&mu_);
  HC_RETURN_IF_ERROR(status0);
  for (const absl::Status& s : status_) HC_RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

}  // namespace hc::model
