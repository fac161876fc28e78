#include "common/intra_op.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "common/logging.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace hc {
namespace {

// Spins before blocking. A decode step issues thousands of small kernel
// calls back to back; a helper that went to sleep costs a futex wake
// (several microseconds) per call, so helpers spin across the short gaps
// between calls and sleep only when the owner is idle. Sized at a few tens
// of microseconds: long enough for the owner's work between two kernel
// calls, short enough not to burn a core that another process needs.
constexpr int kSpinIterations = 20000;

thread_local IntraOpPool* bound_pool = nullptr;

// One spin iteration. Mostly a pause; every 64th a yield, so that when the
// machine is oversubscribed (more runnable threads than cores) a spinner
// hands its core to the thread it waits for instead of burning its slice.
inline void SpinPause(int iteration) {
  if ((iteration & 63) == 63) {
    std::this_thread::yield();
    return;
  }
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

}  // namespace

IntraOpPool::IntraOpPool(int num_threads) {
  HC_CHECK(num_threads >= 1) << "IntraOpPool needs at least the owner thread, got " << num_threads;
  helpers_.reserve(num_threads - 1);
  for (int i = 0; i < num_threads - 1; ++i) {
    helpers_.emplace_back([this, i] { HelperLoop(i); });
  }
}

IntraOpPool::~IntraOpPool() {
  {
    absl::MutexLock lock(&mu_);
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    job_posted_.SignalAll();
  }
  for (std::thread& t : helpers_) t.join();
}

void IntraOpPool::RunPart(const Job& job, int part) {
  const int64_t begin = job.n * part / job.parts;
  const int64_t end = job.n * (part + 1) / job.parts;
  if (begin < end) job.fn(begin, end);
}

void IntraOpPool::ParallelFor(int64_t n, int64_t grain, RangeFn fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_parts = (n + grain - 1) / grain;
  const int parts = static_cast<int>(std::min<int64_t>(num_threads(), max_parts));
  // A nested call from inside a range on the owner thread runs inline: the
  // helpers are busy with the outer job.
  if (parts <= 1 || in_job_) {
    fn(0, n);
    return;
  }
  const Job job{fn, n, parts};
  in_job_ = true;
  // Every helper takes part in every job (those past `parts` run nothing),
  // so completion is one counter over all helpers.
  pending_.store(static_cast<int>(helpers_.size()), std::memory_order_relaxed);
  job_.store(&job, std::memory_order_relaxed);
  {
    absl::MutexLock lock(&mu_);
    generation_.fetch_add(1, std::memory_order_release);
    job_posted_.SignalAll();
  }
  RunPart(job, 0);
  WaitForHelpers();
  in_job_ = false;
}

void IntraOpPool::WaitForHelpers() {
  for (int spin = 0; spin < kSpinIterations; ++spin) {
    if (pending_.load(std::memory_order_acquire) == 0) return;
    SpinPause(spin);
  }
  absl::MutexLock lock(&mu_);
  while (pending_.load(std::memory_order_acquire) != 0) job_done_.Wait(&mu_);
}

void IntraOpPool::HelperLoop(int index) {
  // Generation 0 is the constructor's: no job can be posted before the
  // constructor returns, but this thread may start after one was.
  uint64_t seen = 0;
  while (true) {
    uint64_t now = generation_.load(std::memory_order_acquire);
    for (int spin = 0; now == seen && spin < kSpinIterations; ++spin) {
      SpinPause(spin);
      now = generation_.load(std::memory_order_acquire);
    }
    if (now == seen) {
      absl::MutexLock lock(&mu_);
      while ((now = generation_.load(std::memory_order_acquire)) == seen) job_posted_.Wait(&mu_);
    }
    seen = now;
    if (stop_.load(std::memory_order_acquire)) return;
    const Job* job = job_.load(std::memory_order_relaxed);
    if (index + 1 < job->parts) RunPart(*job, index + 1);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      absl::MutexLock lock(&mu_);
      job_done_.SignalAll();
    }
  }
}

ScopedIntraOpPool::ScopedIntraOpPool(IntraOpPool* pool) : previous_(bound_pool) {
  bound_pool = pool;
}

ScopedIntraOpPool::~ScopedIntraOpPool() { bound_pool = previous_; }

void ParallelFor(int64_t n, int64_t grain, RangeFn fn) {
  if (bound_pool != nullptr) {
    bound_pool->ParallelFor(n, grain, fn);
  } else if (n > 0) {
    fn(0, n);
  }
}

int IntraOpThreads() { return bound_pool != nullptr ? bound_pool->num_threads() : 1; }

namespace {

// cgroup v2 "cpu.max": "<quota> <period>" or "max <period>". Returns the
// quota in CPUs, or 0 when unlimited / unreadable.
double CgroupV2Cpus() {
  std::ifstream in("/sys/fs/cgroup/cpu.max");
  std::string quota, period;
  if (!(in >> quota >> period) || quota == "max") return 0;
  double q = 0, p = 0;
  if (!absl::SimpleAtod(quota, &q) || !absl::SimpleAtod(period, &p) || q <= 0 || p <= 0) return 0;
  return q / p;
}

double CgroupV1Cpus() {
  std::ifstream qin("/sys/fs/cgroup/cpu/cpu.cfs_quota_us");
  std::ifstream pin("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  double q = 0, p = 0;
  if (!(qin >> q) || !(pin >> p) || q <= 0 || p <= 0) return 0;
  return q / p;
}

}  // namespace

int AvailableCpus() {
  int cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = std::max(1, CPU_COUNT(&set));
  double quota = CgroupV2Cpus();
  if (quota <= 0) quota = CgroupV1Cpus();
  if (quota > 0) cpus = std::min(cpus, std::max(1, static_cast<int>(std::ceil(quota))));
  return cpus;
}

}  // namespace hc
