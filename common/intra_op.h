// Intra-op parallelism: one kernel call split across a fixed team of threads.
//
// Ownership model. An IntraOpPool belongs to exactly one owner thread — the
// engine thread, or one tensor-parallel rank's thread — which binds it for
// its lifetime with ScopedIntraOpPool. Kernels never see the pool: they call
// the free function ParallelFor, which uses the pool bound to the calling
// thread, or runs the whole range inline when none is bound (tests, tools,
// and the pool's own helper threads, so nested calls cannot deadlock). This
// keeps tensor parallelism and intra-op parallelism composable: with --tp 2
// --threads 8 each rank thread owns a pool of 4.
//
// Determinism contract. The split of [0, n) depends only on (n, grain, the
// pool's size); kernels that use ParallelFor must give results that do not
// depend on the split at all (each output element computed by one range, in
// the same order whatever the range boundaries), so --threads never changes a
// single bit of a model's output.
#ifndef HC_COMMON_INTRA_OP_H_
#define HC_COMMON_INTRA_OP_H_

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"

namespace hc {

// fn(begin, end) over one contiguous, non-empty range of the index space.
using RangeFn = absl::FunctionRef<void(int64_t begin, int64_t end)>;

// Thread-safety: ParallelFor may be called only by one thread at a time (the
// owner); construction and destruction by that thread too.
class IntraOpPool {
 public:
  // `num_threads` >= 1 counts the owner, which runs one range itself: the
  // pool starts num_threads - 1 helper threads.
  explicit IntraOpPool(int num_threads);
  ~IntraOpPool();
  IntraOpPool(const IntraOpPool&) = delete;
  IntraOpPool& operator=(const IntraOpPool&) = delete;

  int num_threads() const { return static_cast<int>(helpers_.size()) + 1; }

  // Splits [0, n) into t = min(num_threads, ceil(n / grain)) ranges of
  // near-equal size (range i = [i*n/t, (i+1)*n/t)), runs them concurrently
  // and returns when all are done. n <= 0 runs nothing; grain < 1 counts as 1.
  void ParallelFor(int64_t n, int64_t grain, RangeFn fn);

 private:
  struct Job {
    RangeFn fn;
    int64_t n;
    int parts;
  };

  void HelperLoop(int index);
  void WaitForHelpers();
  static void RunPart(const Job& job, int part);

  std::vector<std::thread> helpers_;
  bool in_job_ = false;  // owner thread only: a job is running
  // Publication: the owner stores job_ then bumps generation_ (release);
  // a helper that observes the new generation (acquire) reads job_.
  std::atomic<const Job*> job_{nullptr};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};  // helpers still running the current job
  std::atomic<bool> stop_{false};
  // Sleeping side of the spin-then-block waits: helpers that spun without
  // seeing a new job, and the owner waiting for helpers, block here.
  absl::Mutex mu_;
  absl::CondVar job_posted_ ABSL_GUARDED_BY(mu_);
  absl::CondVar job_done_ ABSL_GUARDED_BY(mu_);
};

// Binds `pool` (may be null: unbinds) to the calling thread for the scope's
// lifetime and restores the previous binding on exit. The pool must outlive
// the scope.
class ScopedIntraOpPool {
 public:
  explicit ScopedIntraOpPool(IntraOpPool* pool);
  ~ScopedIntraOpPool();
  ScopedIntraOpPool(const ScopedIntraOpPool&) = delete;
  ScopedIntraOpPool& operator=(const ScopedIntraOpPool&) = delete;

 private:
  IntraOpPool* previous_;
};

// Runs fn over [0, n) on the pool bound to this thread (see
// IntraOpPool::ParallelFor for the split), or as fn(0, n) inline.
void ParallelFor(int64_t n, int64_t grain, RangeFn fn);

// Threads ParallelFor would use on this thread (1 when no pool is bound).
int IntraOpThreads();

// CPUs this process may use: the affinity mask, further capped by a cgroup
// v2 (cpu.max) or v1 (cpu.cfs_quota_us / cpu.cfs_period_us) CPU quota,
// rounded up; at least 1. The default for a CPU worker's --threads.
int AvailableCpus();

}  // namespace hc

#endif  // HC_COMMON_INTRA_OP_H_
