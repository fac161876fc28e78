// A complete in-process router (memory ledger, real gRPC prober and channels,
// ByteTextCodec) in front of N FakeWorkers, for tests and benchmarks.
#ifndef HC_TESTS_UNIT_ROUTER_SERVICE_ROUTER_HARNESS_H_
#define HC_TESTS_UNIT_ROUTER_SERVICE_ROUTER_HARNESS_H_

#include <memory>
#include <string>
#include <vector>

#include "hybridcache/v1/chat.grpc.pb.h"
#include "prometheus/registry.h"
#include "router/ledger/ledger.h"
#include "router/routing/worker_pool.h"
#include "router/service/chat_service.h"
#include "tests/unit/router/service/fake_worker.h"

namespace hc::router::testing {

struct TurnResult {
  grpc::Status status;
  std::vector<hybridcache::v1::CompleteEvent> events;
  std::vector<uint32_t> tokens;  // all chunk token ids
  std::string text;              // all chunk texts
  const hybridcache::v1::TurnStarted* started() const;
  const hybridcache::v1::TurnCompleted* completed() const;
};

struct HarnessOptions {
  ChatServiceOptions service;
  FakeWorkerOptions worker;
  // Used instead of a fresh memory ledger when set (e.g. Redis, fake clock).
  std::unique_ptr<ConversationLedger> ledger;
  // Used instead of ByteTextCodec when set.
  std::unique_ptr<TextCodec> codec;
  // Workers of another harness to route to as well (router replicas).
  std::vector<std::string> external_workers;
};

class RouterHarness {
 public:
  explicit RouterHarness(int num_workers, ChatServiceOptions options = {},
                         FakeWorkerOptions worker_options = {});
  RouterHarness(int num_workers, HarnessOptions options);
  ~RouterHarness();

  FakeWorker& worker(int i) { return *workers_[i]; }
  WorkerPool& pool() { return *pool_; }
  ConversationLedger& ledger() { return *ledger_; }
  prometheus::Registry& registry() { return *registry_; }
  hybridcache::v1::ChatService::Stub& stub() { return *stub_; }
  const std::string& address() const { return address_; }
  GrpcServer& server() { return *server_; }

  TurnResult Complete(const hybridcache::v1::CompleteRequest& request,
                      absl::Duration timeout = absl::Seconds(30));
  // Complete with `authorization: Bearer <api_key>` metadata (none when empty).
  TurnResult CompleteAs(const std::string& api_key, const hybridcache::v1::CompleteRequest& request,
                        absl::Duration timeout = absl::Seconds(30));
  static hybridcache::v1::CompleteRequest UserTurn(const std::string& id, const std::string& text,
                                                   const std::string& salt = "");
  // Sum of a counter family's value for the given label value.
  double Counter(const std::string& name, const std::string& label, const std::string& value);

 private:
  std::vector<std::unique_ptr<FakeWorker>> workers_;
  std::unique_ptr<ConversationLedger> ledger_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<TextCodec> codec_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<RouterMetrics> metrics_;
  std::unique_ptr<ChatServiceImpl> service_;
  std::unique_ptr<GrpcServer> server_;
  std::string address_;
  std::unique_ptr<hybridcache::v1::ChatService::Stub> stub_;
};

}  // namespace hc::router::testing

#endif  // HC_TESTS_UNIT_ROUTER_SERVICE_ROUTER_HARNESS_H_
