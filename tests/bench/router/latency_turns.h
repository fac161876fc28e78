// The turns the router latency benches time side by side (router_latency_bench,
// router_http_latency_bench): the same streamed turn of a new conversation
// ("hello" rendered by ByteTextCodec, the harness's fake worker's 8-token
// reply) sent straight to the worker, and through the router over gRPC.
#ifndef HC_TESTS_BENCH_ROUTER_LATENCY_TURNS_H_
#define HC_TESTS_BENCH_ROUTER_LATENCY_TURNS_H_

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "grpcpp/create_channel.h"
#include "tests/unit/router/service/router_harness.h"

namespace hc::router::bench {

// The number of timed turns: argv[1] when it is a number, else 2000. Also
// sets the process up as hc-router and hc-worker do (InitProcess: warnings
// only, --mutex_deadlock_detection off).
inline int SetUpLatencyBench(int argc, char** argv) {
  SetMinLogSeverity(LogSeverity::kWarning);
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return (argc > 1 && std::isdigit(static_cast<unsigned char>(argv[1][0]))) ? std::atoi(argv[1])
                                                                            : 2000;
}

inline double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

class LatencyTurns {
 public:
  explicit LatencyTurns(testing::RouterHarness& h)
      : h_(h),
        worker_(hybridcache::v1::WorkerService::NewStub(
            grpc::CreateChannel(h.worker(0).address(), grpc::InsecureChannelCredentials()))),
        prompt_(ByteTextCodec()
                    .EncodeTurn(std::vector<TurnMessage>{{Role::kUser, "hello"}}, TurnContext{})
                    .value()
                    .tokens) {}

  // Milliseconds of one turn of conversation `id` sent to the worker's
  // Execute; nullopt when it failed.
  std::optional<double> Direct(const std::string& id) {
    hybridcache::v1::ExecuteRequest req;
    req.mutable_key()->set_conversation_id(id);
    req.set_request_id(id);
    req.set_new_round(1);
    req.mutable_suffix_token_ids()->Add(prompt_.begin(), prompt_.end());
    const absl::Time t0 = absl::Now();
    grpc::ClientContext ctx;
    auto reader = worker_->Execute(&ctx, req);
    hybridcache::v1::ExecuteEvent e;
    while (reader->Read(&e)) {
    }
    if (!reader->Finish().ok()) return std::nullopt;
    return absl::ToDoubleMilliseconds(absl::Now() - t0);
  }

  // Milliseconds of the first turn of conversation `id` through the router's
  // ChatService.Complete; nullopt when it failed.
  std::optional<double> Routed(const std::string& id) {
    const absl::Time t0 = absl::Now();
    grpc::ClientContext ctx;
    auto reader = h_.stub().Complete(&ctx, testing::RouterHarness::UserTurn(id, "hello"));
    hybridcache::v1::CompleteEvent e;
    while (reader->Read(&e)) {
    }
    if (!reader->Finish().ok()) return std::nullopt;
    return absl::ToDoubleMilliseconds(absl::Now() - t0);
  }

 private:
  testing::RouterHarness& h_;
  std::unique_ptr<hybridcache::v1::WorkerService::Stub> worker_;
  std::vector<uint32_t> prompt_;
};

}  // namespace hc::router::bench

#endif  // HC_TESTS_BENCH_ROUTER_LATENCY_TURNS_H_
