#include "worker/service/health_on_drain.h"

#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "common/server.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "tests/unit/worker/engine/fake_model.h"
#include "tests/unit/worker/runtime/host_cache_memory.h"
#include "worker/cache/conversation_cache.h"
#include "worker/engine/engine.h"
#include "worker/service/worker_service.h"

namespace hc::worker {
namespace {

namespace pb = hybridcache::v1;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// hc-worker's wiring (worker/service/main.cc): a real engine behind the
// WorkerService, whose Drain reports through HealthOnDrain, and a GrpcServer
// that the test attaches when it chooses, so it can place a Drain RPC in the
// window between the server answering RPCs and main holding the server.
class HealthOnDrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    memory_ =
        runtime::testing::MakeHostCacheMemory(
            {.num_layers = 1, .num_blocks = 16, .block_size = 4, .num_kv_heads = 1, .head_dim = 1},
            {.num_layers = 1,
             .num_slots = 4,
             .conv_dim = 1,
             .conv_width = 2,
             .num_heads = 1,
             .head_dim = 1,
             .state_size = 1},
            1)
            .value();
    cache_ = cache::ConversationCache::Create({.memory = memory_.get()}).value();
    model_ = std::make_unique<engine::FakeModel>(memory_.get(), 97);
    engine_ = engine::Engine::Create({.model = model_.get(), .cache = cache_.get()}).value();
    service_ = std::make_unique<WorkerServiceImpl>(
        WorkerServiceOptions{.worker_id = "w0",
                             .engine = engine_.get(),
                             .max_model_len = 64,
                             .vocab_size = 97,
                             .on_drain = [this] { health_.Drain(); }});
    server_ =
        GrpcServer::Start({}, {{service_.get(), pb::WorkerService::service_full_name()}}).value();
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
  }
  void TearDown() override {
    server_->Shutdown();
    health_.Detach();
    engine_->Stop();
  }

  void DrainRpc() {
    grpc::ClientContext ctx;
    pb::DrainResponse response;
    const grpc::Status s =
        pb::WorkerService::NewStub(channel_)->Drain(&ctx, pb::DrainRequest(), &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  HealthCheckResponse::ServingStatus Check(const std::string& service = "") {
    grpc::ClientContext ctx;
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    const grpc::Status s =
        grpc::health::v1::Health::NewStub(channel_)->Check(&ctx, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.status();
  }

  HealthOnDrain health_;  // outlives the service and the server, as in main
  std::unique_ptr<runtime::BackendCacheMemory> memory_;
  std::unique_ptr<cache::ConversationCache> cache_;
  std::unique_ptr<engine::FakeModel> model_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<WorkerServiceImpl> service_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(HealthOnDrainTest, DrainRpcBeforeTheServerIsAttachedTurnsHealthNotServingOnAttach) {
  // The server answers RPCs before main holds it: a Drain arrives now.
  DrainRpc();
  EXPECT_TRUE(health_.drained());
  EXPECT_TRUE(engine_->Load().draining);
  EXPECT_EQ(Check(), HealthCheckResponse::SERVING);  // nothing to tell yet
  health_.Attach(server_.get());
  EXPECT_EQ(Check(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Check(pb::WorkerService::service_full_name()), HealthCheckResponse::NOT_SERVING);
}

TEST_F(HealthOnDrainTest, DrainRpcAfterAttachTurnsHealthNotServingAtOnce) {
  health_.Attach(server_.get());
  EXPECT_EQ(Check(), HealthCheckResponse::SERVING);
  DrainRpc();
  EXPECT_EQ(Check(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Check(pb::WorkerService::service_full_name()), HealthCheckResponse::NOT_SERVING);
}

TEST_F(HealthOnDrainTest, DrainRacingAttachAlwaysEndsNotServing) {
  for (int i = 0; i < 200; ++i) {
    server_->SetServing(true);
    HealthOnDrain link;
    absl::Notification go;
    std::thread drainer([&] {
      go.WaitForNotification();
      link.Drain();
    });
    go.Notify();
    link.Attach(server_.get());
    drainer.join();
    ASSERT_EQ(Check(), HealthCheckResponse::NOT_SERVING) << "iteration " << i;
    link.Detach();
  }
}

TEST_F(HealthOnDrainTest, DetachedServerIsNoLongerTouched) {
  health_.Attach(server_.get());
  health_.Detach();
  health_.Drain();
  EXPECT_EQ(Check(), HealthCheckResponse::SERVING);
}

}  // namespace
}  // namespace hc::worker
