// Collective communication between the tensor-parallel ranks of one model.
//
// Every operation is a collective: all ranks of the group must call the same
// sequence of operations with the same `count` (and root); an operation
// returns only after every rank has entered it. Buffers are memory of the
// ranks' backend. A count mismatch is reported as INVALID_ARGUMENT on every
// rank (no data is moved).
//
// Thread-safety: one Communicator object per rank, used by that rank's thread
// only.
#ifndef HC_WORKER_RUNTIME_COMMUNICATOR_H_
#define HC_WORKER_RUNTIME_COMMUNICATOR_H_

#include <cstddef>
#include <memory>
#include <vector>

#include "absl/status/status.h"

namespace hc::runtime {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // In place: data[i] = sum over ranks r = 0, 1, ... of rank r's data[i].
  // The summation order is fixed, so every rank gets bitwise the same result
  // and repeated runs reproduce it.
  virtual absl::Status AllReduceSum(float* data, size_t count) = 0;

  // recv[r * count + i] = send of rank r at i. recv: size() * count floats,
  // must not overlap any rank's send.
  virtual absl::Status AllGather(const float* send, float* recv, size_t count) = 0;

  // Every rank's data becomes rank root's data. REQUIRES 0 <= root < size().
  virtual absl::Status Broadcast(float* data, size_t count, int root) = 0;
};

// In-process communicators for `size` ranks that run on separate threads
// (element r is rank r). The group's shared state lives as long as any of
// them. REQUIRES size >= 1.
std::vector<std::unique_ptr<Communicator>> CreateThreadCommunicators(int size);

}  // namespace hc::runtime

#endif  // HC_WORKER_RUNTIME_COMMUNICATOR_H_
