// NCCL communicators for tensor parallel in one process: one rank per GPU,
// each rank driven by its own thread (ncclCommInitAll over the backends'
// devices). Collectives are enqueued on the rank backend's stream and return
// once enqueued: the results are ordered before later work on that stream
// (the model's kernels, copies), which is what the Communicator contract's
// "returns after every rank entered" provides for device buffers. NCCL's ring
// / tree reductions give every rank bitwise the same sums, and repeated runs
// on the same topology reproduce them.
//
// Differences from the thread communicator: a count mismatch between ranks is
// not detected (NCCL would hang or fault), so callers must agree on counts, as
// HybridModel does by construction.
//
// Thread-safety: one Communicator per rank, used by that rank's thread only;
// all ranks must call each collective concurrently (one thread per rank).
#ifndef HC_WORKER_RUNTIME_NCCL_COMMUNICATOR_H_
#define HC_WORKER_RUNTIME_NCCL_COMMUNICATOR_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/runtime/communicator.h"
#include "worker/runtime/cuda_backend.h"

namespace hc::runtime {

// Element r is rank r, on backends[r] (distinct devices; not owned; they
// outlive the communicators). INVALID_ARGUMENT for an empty list or repeated
// devices; INTERNAL when NCCL fails to initialise.
absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> CreateNcclCommunicators(
    const std::vector<CudaBackend*>& backends);

}  // namespace hc::runtime

#endif  // HC_WORKER_RUNTIME_NCCL_COMMUNICATOR_H_
