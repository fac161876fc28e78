// An in-process WorkerService for router tests and benchmarks: it keeps each
// conversation's committed state (tokens, round, hash) like a real worker,
// answers StateMissing when it does not hold the expected state, and
// "generates" a deterministic reply from the context: letters derived from the
// context hash, then an emoji sent one byte per batch (so streaming decode
// must hold back partial UTF-8), then EOS. Tokens are ByteTextCodec ids.
#ifndef HC_TESTS_UNIT_ROUTER_SERVICE_FAKE_WORKER_H_
#define HC_TESTS_UNIT_ROUTER_SERVICE_FAKE_WORKER_H_

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/server.h"
#include "hybridcache/v1/worker.grpc.pb.h"

namespace hc::router::testing {

struct FakeWorkerOptions {
  std::string id = "fake";
  uint32_t max_model_len = 4096;
  uint32_t vocab_size = 259;
  int reply_letters = 3;
  bool emoji = true;
  // The id the reply ends with (ByteTextCodec's EOS unless a test's codec
  // has another end-of-turn token).
  uint32_t eos = 256;
};

class FakeWorker final : public hybridcache::v1::WorkerService::Service {
 public:
  explicit FakeWorker(FakeWorkerOptions options) : options_(std::move(options)) {}

  // Starts a real gRPC server (with health) for it on a free loopback port.
  void Serve();
  void Shutdown() { server_.reset(); }
  std::string address() const { return server_->address(); }

  // The reply the fake model gives to `context` (without max_tokens).
  std::vector<uint32_t> Reply(std::span<const uint32_t> context) const;

  // Knobs.
  void ForgetAll();               // drops every cached state
  void SetLoadFails(bool fails);  // Load errors: the router's probe marks it unhealthy
  // The next Execute blocks after ExecuteStarted (and after `tokens_before`
  // token batches) until Unblock() or cancellation; entered() fires then.
  void BlockNext(int tokens_before = 0);
  // As above, but notifies `entered` (shared by several workers, so a test
  // can wait for whichever one the turn was routed to).
  void BlockNext(int tokens_before, std::shared_ptr<absl::Notification> entered);
  absl::Notification& entered() { return *entered_; }
  // The next `times` Execute calls fail at once with `code` (nothing streamed).
  void FailNext(grpc::StatusCode code, int times);
  void Unblock() { unblock_->Notify(); }

  // Observations.
  std::vector<hybridcache::v1::ExecuteRequest> requests();
  std::vector<std::string> released();
  bool saw_cancel();
  // Waits until a blocked Execute has seen its call cancelled; false on timeout.
  bool AwaitCancel(absl::Duration timeout);
  std::chrono::system_clock::time_point last_deadline();

  grpc::Status Execute(grpc::ServerContext* ctx, const hybridcache::v1::ExecuteRequest* req,
                       grpc::ServerWriter<hybridcache::v1::ExecuteEvent>* writer) override;
  grpc::Status Load(grpc::ServerContext*, const hybridcache::v1::LoadRequest*,
                    hybridcache::v1::LoadReport* report) override;
  grpc::Status Release(grpc::ServerContext*, const hybridcache::v1::ReleaseRequest* req,
                       hybridcache::v1::ReleaseResponse* resp) override;

 private:
  struct State {
    uint64_t round = 0;
    std::vector<uint32_t> tokens;
  };
  const FakeWorkerOptions options_;
  std::unique_ptr<GrpcServer> server_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, State> states_ ABSL_GUARDED_BY(mu_);
  std::vector<hybridcache::v1::ExecuteRequest> requests_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> released_ ABSL_GUARDED_BY(mu_);
  bool load_fails_ ABSL_GUARDED_BY(mu_) = false;
  int block_next_ ABSL_GUARDED_BY(mu_) = -1;
  grpc::StatusCode fail_code_ ABSL_GUARDED_BY(mu_) = grpc::StatusCode::OK;
  int fail_times_ ABSL_GUARDED_BY(mu_) = 0;
  bool saw_cancel_ ABSL_GUARDED_BY(mu_) = false;
  std::chrono::system_clock::time_point last_deadline_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<absl::Notification> entered_ = std::make_shared<absl::Notification>();
  std::unique_ptr<absl::Notification> unblock_ = std::make_unique<absl::Notification>();
};

}  // namespace hc::router::testing

#endif  // HC_TESTS_UNIT_ROUTER_SERVICE_FAKE_WORKER_H_
