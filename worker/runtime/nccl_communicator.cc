#include "worker/runtime/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace hc::runtime {
namespace {

absl::Status NcclStatus(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", ncclGetErrorString(r)));
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int size, CudaBackend* backend)
      : comm_(comm), rank_(rank), size_(size), backend_(backend) {}
  ~NcclCommunicator() override {
    cudaSetDevice(backend_->device());
    ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  absl::Status AllReduceSum(float* data, size_t count) override {
    if (count == 0) return absl::OkStatus();
    UseDevice();
    return NcclStatus(ncclAllReduce(data, data, count, ncclFloat, ncclSum, comm_, Stream()),
                      "ncclAllReduce");
  }

  absl::Status AllGather(const float* send, float* recv, size_t count) override {
    if (count == 0) return absl::OkStatus();
    UseDevice();
    return NcclStatus(ncclAllGather(send, recv, count, ncclFloat, comm_, Stream()),
                      "ncclAllGather");
  }

  absl::Status Broadcast(float* data, size_t count, int root) override {
    if (root < 0 || root >= size_) {
      return absl::InvalidArgumentError(absl::StrCat("Broadcast: bad root ", root));
    }
    if (count == 0) return absl::OkStatus();
    UseDevice();
    return NcclStatus(ncclBroadcast(data, data, count, ncclFloat, root, comm_, Stream()),
                      "ncclBroadcast");
  }

 private:
  cudaStream_t Stream() const { return backend_->stream(); }
  void UseDevice() const {
    const cudaError_t err = cudaSetDevice(backend_->device());
    HC_CHECK(err == cudaSuccess) << "cudaSetDevice: " << cudaGetErrorString(err);
  }

  const ncclComm_t comm_;
  const int rank_;
  const int size_;
  CudaBackend* const backend_;
};

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> CreateNcclCommunicators(
    const std::vector<CudaBackend*>& backends) {
  if (backends.empty()) return absl::InvalidArgumentError("no backends");
  std::vector<int> devices;
  std::set<int> seen;
  for (CudaBackend* b : backends) {
    if (b == nullptr) return absl::InvalidArgumentError("null backend");
    if (!seen.insert(b->device()).second) {
      return absl::InvalidArgumentError(absl::StrCat("device ", b->device(), " repeated"));
    }
    devices.push_back(b->device());
  }
  const int n = static_cast<int>(devices.size());
  std::vector<ncclComm_t> comms(n);
  absl::Status st = NcclStatus(ncclCommInitAll(comms.data(), n, devices.data()), "ncclCommInitAll");
  if (!st.ok()) return st;
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < n; ++r) {
    out.push_back(std::make_unique<NcclCommunicator>(comms[r], r, n, backends[r]));
  }
  return out;
}

}  // namespace hc::runtime
