// Thread communicator: a shared rendezvous where every rank publishes its
// buffers, then works on them directly (host memory shared by the threads).
//
// Each collective is: Arrive (publish + barrier, returns a snapshot of all
// ranks' buffers) -> move data -> Barrier. Until the closing barrier no rank
// returns, so no buffer is reused while another rank still reads it, and no
// rank republishes before all have taken their snapshot. AllReduceSum splits
// the elements into `size` ranges; rank r sums range r over ranks 0..size-1 in
// that order and writes the sum to every rank's buffer.
#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "worker/runtime/communicator.h"

namespace hc::runtime {
namespace {

struct Published {
  const float* send = nullptr;
  float* recv = nullptr;
  size_t count = 0;
  int root = 0;
};

class Rendezvous {
 public:
  explicit Rendezvous(int size) : size_(size), published_(size) {}

  int size() const { return size_; }

  // Publishes rank's buffers and waits for all ranks; returns all of them.
  std::vector<Published> Arrive(int rank, const Published& mine) {
    absl::MutexLock lock(&mu_);
    published_[rank] = mine;
    WaitForAllLocked();
    return published_;
  }

  void Barrier() {
    absl::MutexLock lock(&mu_);
    WaitForAllLocked();
  }

 private:
  void WaitForAllLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const uint64_t generation = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      all_arrived_.SignalAll();
      return;
    }
    while (generation_ == generation) all_arrived_.Wait(&mu_);
  }

  const int size_;
  absl::Mutex mu_;
  absl::CondVar all_arrived_;
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Published> published_ ABSL_GUARDED_BY(mu_);
};

absl::Status CheckSameShape(const std::vector<Published>& all, const char* op) {
  for (const Published& p : all) {
    if (p.count != all[0].count || p.root != all[0].root) {
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": ranks disagree on count/root (", all[0].count, " vs ", p.count, ")"));
    }
  }
  return absl::OkStatus();
}

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<Rendezvous> rendezvous, int rank)
      : rendezvous_(std::move(rendezvous)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return rendezvous_->size(); }

  absl::Status AllReduceSum(float* data, size_t count) override {
    const auto all = rendezvous_->Arrive(rank_, {.send = data, .recv = data, .count = count});
    absl::Status status = CheckSameShape(all, "AllReduceSum");
    if (status.ok()) {
      const size_t n = size();
      const size_t lo = count * rank_ / n, hi = count * (rank_ + 1) / n;
      for (size_t i = lo; i < hi; ++i) {
        float sum = all[0].recv[i];
        for (size_t r = 1; r < n; ++r) sum += all[r].recv[i];
        for (size_t r = 0; r < n; ++r) all[r].recv[i] = sum;
      }
    }
    rendezvous_->Barrier();
    return status;
  }

  absl::Status AllGather(const float* send, float* recv, size_t count) override {
    const auto all = rendezvous_->Arrive(rank_, {.send = send, .recv = recv, .count = count});
    absl::Status status = CheckSameShape(all, "AllGather");
    if (status.ok()) {
      for (size_t r = 0; r < all.size(); ++r) {
        if (count > 0) std::memcpy(recv + r * count, all[r].send, count * sizeof(float));
      }
    }
    rendezvous_->Barrier();
    return status;
  }

  absl::Status Broadcast(float* data, size_t count, int root) override {
    if (root < 0 || root >= size()) {
      // Still rendezvous so that the other ranks do not hang on this call.
      rendezvous_->Arrive(rank_, {.recv = data, .count = count, .root = -1});
      rendezvous_->Barrier();
      return absl::InvalidArgumentError(absl::StrCat("Broadcast: bad root ", root));
    }
    const auto all = rendezvous_->Arrive(rank_, {.recv = data, .count = count, .root = root});
    absl::Status status = CheckSameShape(all, "Broadcast");
    if (status.ok() && rank_ != root && count > 0) {
      std::memcpy(data, all[root].recv, count * sizeof(float));
    }
    rendezvous_->Barrier();
    return status;
  }

 private:
  std::shared_ptr<Rendezvous> rendezvous_;
  const int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> CreateThreadCommunicators(int size) {
  HC_CHECK(size >= 1) << "communicator group size must be positive, got " << size;
  auto rendezvous = std::make_shared<Rendezvous>(size);
  std::vector<std::unique_ptr<Communicator>> comms;
  for (int r = 0; r < size; ++r)
    comms.push_back(std::make_unique<ThreadCommunicator>(rendezvous, r));
  return comms;
}

}  // namespace hc::runtime
