#include "common/server.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "hybridcache/v1/worker.grpc.pb.h"

namespace hc {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// A WorkerService whose Load blocks until released: an in-flight call the
// test controls.
class BlockingService final : public hybridcache::v1::WorkerService::Service {
 public:
  grpc::Status Load(grpc::ServerContext* ctx, const hybridcache::v1::LoadRequest*,
                    hybridcache::v1::LoadReport* report) override {
    entered_.Notify();
    while (!release_.WaitForNotificationWithTimeout(absl::Milliseconds(5))) {
      if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }
    report->set_worker_id("drained");
    return grpc::Status::OK;
  }
  absl::Notification entered_;
  absl::Notification release_;
};

class ServerTest : public ::testing::Test {
 protected:
  void StartServer(absl::Duration drain_timeout, bool start_serving = true,
                   const std::function<void(ServerOptions&)>& tweak = nullptr) {
    ServerOptions options;
    options.drain_timeout = drain_timeout;
    options.start_serving = start_serving;
    if (tweak) tweak(options);
    server_ = GrpcServer::Start(options,
                                {{&service_, hybridcache::v1::WorkerService::service_full_name()}})
                  .value();
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
  }
  HealthCheckResponse::ServingStatus Check(const std::string& service = "") {
    return CheckOn(channel_, service);
  }
  static HealthCheckResponse::ServingStatus CheckOn(const std::shared_ptr<grpc::Channel>& channel,
                                                    const std::string& service = "") {
    auto stub = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    HealthCheckRequest req;
    req.set_service(service);
    HealthCheckResponse resp;
    const grpc::Status s = stub->Check(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.status();
  }

  BlockingService service_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(ServerTest, HealthIsServingAfterStart) {
  StartServer(absl::Seconds(5));
  EXPECT_GT(server_->port(), 0);
  EXPECT_EQ(Check(), HealthCheckResponse::SERVING);
  EXPECT_EQ(Check("hybridcache.v1.WorkerService"), HealthCheckResponse::SERVING);
}

TEST_F(ServerTest, StartNotServingReportsNotServingUntilSetServing) {
  StartServer(absl::Seconds(5), /*start_serving=*/false);
  EXPECT_EQ(Check(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Check("hybridcache.v1.WorkerService"), HealthCheckResponse::NOT_SERVING);
  server_->SetServing(true);
  EXPECT_EQ(Check(), HealthCheckResponse::SERVING);
  EXPECT_EQ(Check("hybridcache.v1.WorkerService"), HealthCheckResponse::SERVING);
}

// Liveness/startup probes check kLivenessService: SERVING while the server
// runs, whether or not it is ready, NOT_SERVING once it shuts down.
TEST_F(ServerTest, LivenessIsServingWhileNotReadyAndNotServingAfterShutdown) {
  StartServer(absl::Seconds(5), /*start_serving=*/false);
  EXPECT_EQ(Check(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Check(kLivenessService), HealthCheckResponse::SERVING);
  server_->SetServing(true);
  server_->SetServing(false);
  EXPECT_EQ(Check(kLivenessService), HealthCheckResponse::SERVING);

  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext watch_ctx;
  HealthCheckRequest watch_req;
  watch_req.set_service(kLivenessService);
  auto watch = health->Watch(&watch_ctx, watch_req);
  HealthCheckResponse update;
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::SERVING);
  std::thread stopper([&] { server_->Shutdown(); });
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::NOT_SERVING);
  watch_ctx.TryCancel();  // the Watch is an in-flight call the drain would wait for
  watch->Finish().IgnoreError();
  stopper.join();
}

TEST_F(ServerTest, ShutdownTurnsHealthNotServingAndDrainsInFlightCalls) {
  StartServer(absl::Seconds(30));
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext watch_ctx;
  HealthCheckRequest watch_req;
  auto watch = health->Watch(&watch_ctx, watch_req);
  HealthCheckResponse update;
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::SERVING);

  // An in-flight call that the server must let finish.
  auto worker = hybridcache::v1::WorkerService::NewStub(channel_);
  hybridcache::v1::LoadReport report;
  grpc::Status load_status;
  std::thread caller([&] {
    grpc::ClientContext ctx;
    load_status = worker->Load(&ctx, hybridcache::v1::LoadRequest(), &report);
  });
  service_.entered_.WaitForNotification();

  absl::Notification drain_hook_ran;
  server_->SetDrainHook([&] { drain_hook_ran.Notify(); });
  std::thread stopper([&] { server_->Shutdown(); });

  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::NOT_SERVING);
  drain_hook_ran.WaitForNotification();
  EXPECT_TRUE(server_->shutting_down());

  // The open Watch stream is itself an in-flight call: end it first.
  watch_ctx.TryCancel();
  watch->Finish().IgnoreError();
  service_.release_.Notify();
  caller.join();
  stopper.join();
  EXPECT_TRUE(load_status.ok()) << load_status.error_message();
  EXPECT_EQ(report.worker_id(), "drained");

  // Stopped: new calls are refused.
  grpc::ClientContext late_ctx;
  late_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  EXPECT_FALSE(worker->Load(&late_ctx, hybridcache::v1::LoadRequest(), &report).ok());
}

TEST_F(ServerTest, CallsStillRunningAtTheDrainDeadlineAreCancelled) {
  StartServer(absl::Milliseconds(200));
  auto worker = hybridcache::v1::WorkerService::NewStub(channel_);
  hybridcache::v1::LoadReport report;
  grpc::Status load_status;
  std::thread caller([&] {
    grpc::ClientContext ctx;
    load_status = worker->Load(&ctx, hybridcache::v1::LoadRequest(), &report);
  });
  service_.entered_.WaitForNotification();
  server_->Shutdown();  // never released: must return after the deadline
  caller.join();
  EXPECT_FALSE(load_status.ok());
}

// Lists services through grpc.reflection.v1alpha with hand-encoded messages:
// ServerReflectionRequest{list_services = ""} is field 7; the response's
// list_services_response is field 6, holding repeated ServiceResponse{name = 1}.
// Returns the call's status and the names listed.
std::pair<grpc::Status, std::vector<std::string>> ListServices(
    const std::shared_ptr<grpc::Channel>& channel) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  grpc::CompletionQueue cq;
  void* tag;
  bool ok;
  std::vector<std::string> names;
  auto call =
      stub.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  call->StartCall(reinterpret_cast<void*>(1));
  cq.Next(&tag, &ok);
  const std::string request("\x3a\x00", 2);
  grpc::Slice slice(request);
  grpc::ByteBuffer out(&slice, 1);
  call->Write(out, reinterpret_cast<void*>(2));
  cq.Next(&tag, &ok);
  grpc::ByteBuffer in;
  call->Read(&in, reinterpret_cast<void*>(3));
  cq.Next(&tag, &ok);
  if (ok) {
    std::vector<grpc::Slice> slices;
    EXPECT_TRUE(in.Dump(&slices).ok());
    std::string bytes;
    for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    google::protobuf::UnknownFieldSet response;
    EXPECT_TRUE(response.ParseFromString(bytes));
    for (int i = 0; i < response.field_count(); ++i) {
      if (response.field(i).number() != 6) continue;
      google::protobuf::UnknownFieldSet list;
      EXPECT_TRUE(list.ParseFromString(response.field(i).length_delimited()));
      for (int j = 0; j < list.field_count(); ++j) {
        google::protobuf::UnknownFieldSet service;
        EXPECT_TRUE(service.ParseFromString(list.field(j).length_delimited()));
        names.push_back(service.field(0).length_delimited());
      }
    }
    call->WritesDone(reinterpret_cast<void*>(4));
    cq.Next(&tag, &ok);
  }
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return {status, names};
}

TEST_F(ServerTest, ReflectionListsTheRegisteredServicesWhenEnabled) {
  StartServer(absl::Seconds(5), true, [](ServerOptions& o) { o.reflection = true; });
  auto [status, names] = ListServices(channel_);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_NE(std::find(names.begin(), names.end(), "hybridcache.v1.WorkerService"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "grpc.health.v1.Health"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "grpc.reflection.v1alpha.ServerReflection"),
            names.end());
}

// Reflection describes every method to whoever connects: off unless asked for.
TEST_F(ServerTest, ReflectionIsOffByDefault) {
  StartServer(absl::Seconds(5));
  auto [status, names] = ListServices(channel_);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED) << status.error_message();
  EXPECT_TRUE(names.empty());
}

// The health-only port mirrors the main port's statuses (readiness, liveness,
// the drain) and serves nothing else: not the bound service, not reflection.
TEST_F(ServerTest, HealthPortServesOnlyHealthWithTheMainPortsStatuses) {
  StartServer(absl::Seconds(30), /*start_serving=*/false, [](ServerOptions& o) {
    o.health_port = 0;
    o.reflection = true;
  });
  ASSERT_GT(server_->health_port(), 0);
  ASSERT_NE(server_->health_port(), server_->port());
  auto health_channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->health_port()),
                                            grpc::InsecureChannelCredentials());
  EXPECT_EQ(CheckOn(health_channel), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(CheckOn(health_channel, kLivenessService), HealthCheckResponse::SERVING);
  server_->SetServing(true);
  EXPECT_EQ(CheckOn(health_channel), HealthCheckResponse::SERVING);
  EXPECT_EQ(CheckOn(health_channel, "hybridcache.v1.WorkerService"), HealthCheckResponse::SERVING);

  auto worker_on_health_port = hybridcache::v1::WorkerService::NewStub(health_channel);
  grpc::ClientContext load_ctx;
  hybridcache::v1::LoadReport report;
  EXPECT_EQ(
      worker_on_health_port->Load(&load_ctx, hybridcache::v1::LoadRequest(), &report).error_code(),
      grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_FALSE(service_.entered_.HasBeenNotified());
  EXPECT_EQ(ListServices(health_channel).first.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_TRUE(ListServices(channel_).first.ok());  // on the main port, as asked

  // During the drain (an in-flight call holds it) probes read NOT_SERVING.
  auto worker = hybridcache::v1::WorkerService::NewStub(channel_);
  std::thread caller([&] {
    grpc::ClientContext ctx;
    hybridcache::v1::LoadReport r;
    EXPECT_TRUE(worker->Load(&ctx, hybridcache::v1::LoadRequest(), &r).ok());
  });
  service_.entered_.WaitForNotification();
  std::thread stopper([&] { server_->Shutdown(); });
  while (server_->shutting_down() == false) std::this_thread::yield();
  // SetServing(false) runs right after shutting_down_ is set: poll for it.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (CheckOn(health_channel, kLivenessService) != HealthCheckResponse::NOT_SERVING &&
         absl::Now() < deadline) {
  }
  EXPECT_EQ(CheckOn(health_channel, kLivenessService), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(CheckOn(health_channel), HealthCheckResponse::NOT_SERVING);
  service_.release_.Notify();
  caller.join();
  stopper.join();
}

TEST(ServerStartTest, BindFailureIsUnavailable) {
  ServerOptions options;
  options.host = "203.0.113.1";  // TEST-NET-3: not an address of this machine
  hybridcache::v1::WorkerService::Service service;
  EXPECT_EQ(GrpcServer::Start(options, {{&service, "s"}}).status().code(),
            absl::StatusCode::kUnavailable);
}

// A thread started before BlockShutdownSignals does not block SIGINT/SIGTERM
// (OpenBLAS starts its pool from a library constructor, before main). A
// signal the kernel hands to it must not end the process (the default
// action): it must reach WaitForShutdownSignal, and a second one (Ctrl-C
// and then run-stack.sh's SIGTERM, while draining) must be harmless.
TEST(ShutdownSignalsTest, ThreadStartedBeforeBlockingDoesNotEndTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process, signals at defaults
  EXPECT_EXIT(
      {
        std::atomic<bool> stop{false};
        std::thread early([&stop] {
          while (!stop.load()) ::usleep(1000);
        });
        BlockShutdownSignals();
        // main blocks it and is not waiting: the kernel picks `early`.
        ::kill(::getpid(), SIGTERM);
        if (WaitForShutdownSignal() != SIGTERM) ::_exit(2);
        ::kill(::getpid(), SIGINT);  // during the drain
        ::usleep(200 * 1000);
        stop.store(true);
        early.join();
        ::_exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace hc
