// Latency the router adds to a streamed turn: the same turn (a new
// conversation, "hello" rendered by ByteTextCodec, an 8-token streamed reply)
// sent to an in-process fake worker directly over loopback, and through an
// in-process router (memory ledger) to the same worker. Interleaved so both
// see the same machine state; prints p50/p99 of each and of the difference.
// Goal: p50 <= 0.3 ms added.
#include <algorithm>
#include <cctype>
#include <cstdio>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "grpcpp/create_channel.h"
#include "tests/unit/router/service/router_harness.h"

namespace hc::router {
namespace {
namespace v1 = hybridcache::v1;

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

}  // namespace
}  // namespace hc::router

int main(int argc, char** argv) {
  using namespace hc::router;
  const int turns = (argc > 1 && std::isdigit(static_cast<unsigned char>(argv[1][0])))
                        ? std::atoi(argv[1])
                        : 2000;
  hc::SetMinLogSeverity(hc::LogSeverity::kWarning);
  // As in hc-router and hc-worker (InitProcess, --mutex_deadlock_detection).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  testing::RouterHarness h(1);
  auto worker = v1::WorkerService::NewStub(
      grpc::CreateChannel(h.worker(0).address(), grpc::InsecureChannelCredentials()));
  ByteTextCodec codec;
  const auto prompt =
      codec.EncodeTurn(std::vector<TurnMessage>{{Role::kUser, "hello"}}, TurnContext{}).value();

  std::vector<double> direct, routed;
  for (int i = 0; i < turns + 200; ++i) {
    const std::string id = "bench-" + std::to_string(i);
    // Direct.
    v1::ExecuteRequest req;
    req.mutable_key()->set_conversation_id(id + "-d");
    req.set_request_id(id);
    req.set_new_round(1);
    req.mutable_suffix_token_ids()->Add(prompt.tokens.begin(), prompt.tokens.end());
    absl::Time t0 = absl::Now();
    {
      grpc::ClientContext ctx;
      auto reader = worker->Execute(&ctx, req);
      v1::ExecuteEvent e;
      while (reader->Read(&e)) {
      }
      if (!reader->Finish().ok()) return 1;
    }
    const double d = absl::ToDoubleMilliseconds(absl::Now() - t0);
    // Through the router.
    t0 = absl::Now();
    {
      grpc::ClientContext ctx;
      auto reader = h.stub().Complete(&ctx, testing::RouterHarness::UserTurn(id + "-r", "hello"));
      v1::CompleteEvent e;
      while (reader->Read(&e)) {
      }
      if (!reader->Finish().ok()) return 1;
    }
    const double r = absl::ToDoubleMilliseconds(absl::Now() - t0);
    if (i >= 200) {  // warm-up done
      direct.push_back(d);
      routed.push_back(r);
    }
  }
  std::vector<double> added(direct.size());
  for (size_t i = 0; i < direct.size(); ++i) added[i] = routed[i] - direct[i];
  std::printf("direct to worker: p50 %.3f ms p99 %.3f ms\n", Percentile(direct, 0.5),
              Percentile(direct, 0.99));
  std::printf("through router:   p50 %.3f ms p99 %.3f ms\n", Percentile(routed, 0.5),
              Percentile(routed, 0.99));
  std::printf(
      "SUMMARY router added latency per streamed turn (%d turns, 8 tokens each): p50 %.3f ms, p99 "
      "%.3f ms "
      "(p50(routed)-p50(direct) = %.3f ms; goal p50 <= 0.3 ms)\n",
      turns, Percentile(added, 0.5), Percentile(added, 0.99),
      Percentile(routed, 0.5) - Percentile(direct, 0.5));
  return 0;
}
