// A fixed pool of threads for CPU-heavy request work that must not run on a
// gRPC callback thread (tokenizing a turn's messages): a slow job then delays
// other jobs, never the RPCs of every other turn.
//
// Thread-safety: Schedule is thread-safe. The destructor runs the jobs still
// queued, then joins the threads; jobs must not Schedule after it started.
#ifndef HC_ROUTER_SERVICE_WORK_POOL_H_
#define HC_ROUTER_SERVICE_WORK_POOL_H_

#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace hc::router {

class WorkPool {
 public:
  // `threads` <= 0 means one per CPU core.
  explicit WorkPool(int threads);
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Runs `job` on a pool thread, in FIFO order with the other jobs.
  void Schedule(absl::AnyInvocable<void() &&> job);

 private:
  void Loop();

  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void() &&>> jobs_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace hc::router

#endif  // HC_ROUTER_SERVICE_WORK_POOL_H_
