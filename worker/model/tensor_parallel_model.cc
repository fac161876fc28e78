#include "worker/model/tensor_parallel_model.h"

#include <thread>
#include <utility>

#include "common/status_macros.h"

namespace hc::model {

absl::StatusOr<std::unique_ptr<TensorParallelModel>> TensorParallelModel::Create(
    const TensorParallelModelOptions& options, const ModelConfig& config, TensorLoader load) {
  if (options.tp_size < 1) return absl::InvalidArgumentError("tp_size must be positive");
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
    HC_ASSIGN_OR_RETURN(auto rank,
                        HybridModel::Create({.tp_size = options.tp_size, .rank = r,
                                             .backend = backend,
                                             .communicator = model->comms_[r].get()},
                                            config, load));
    model->ranks_.push_back(std::move(rank));
  }
  return model;
}

runtime::KvLayout TensorParallelModel::KvLayout(int num_blocks, int block_size) const {
  return ranks_[0]->plan().KvLayout(config(), num_blocks, block_size);
}

runtime::MambaLayout TensorParallelModel::MambaLayout(int num_slots) const {
  return ranks_[0]->plan().MambaLayout(config(), num_slots);
}

absl::Status TensorParallelModel::Forward(const ForwardBatch& batch,
                                          runtime::CacheMemory* cache,
                                          std::vector<float>* logits) {
  const int tp = tp_size();
  std::vector<absl::Status> status(tp);
  std::vector<std::vector<float>> unused(tp);
  std::vector<std::thread> threads;
  threads.reserve(tp - 1);
  for (int r = 1; r < tp; ++r) {
    threads.emplace_back([&, r] { status[r] = ranks_[r]->Forward(batch, cache, &unused[r]); });
  }
  status[0] = ranks_[0]->Forward(batch, cache, logits);
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : status) HC_RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

}  // namespace hc::model
