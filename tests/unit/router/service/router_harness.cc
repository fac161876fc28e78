#include "tests/unit/router/service/router_harness.h"

#include "grpcpp/create_channel.h"
#include "router/ledger/memory_ledger.h"

namespace hc::router::testing {
namespace v1 = hybridcache::v1;

const v1::TurnStarted* TurnResult::started() const {
  for (const auto& e : events)
    if (e.has_started()) return &e.started();
  return nullptr;
}
const v1::TurnCompleted* TurnResult::completed() const {
  for (const auto& e : events)
    if (e.has_completed()) return &e.completed();
  return nullptr;
}

namespace {
HarnessOptions MakeOptions(ChatServiceOptions service, FakeWorkerOptions worker) {
  HarnessOptions o;
  o.service = std::move(service);
  o.worker = std::move(worker);
  return o;
}
}  // namespace

RouterHarness::RouterHarness(int num_workers, ChatServiceOptions options,
                             FakeWorkerOptions worker_options)
    : RouterHarness(num_workers, MakeOptions(std::move(options), std::move(worker_options))) {}

RouterHarness::RouterHarness(int num_workers, HarnessOptions ho) {
  ChatServiceOptions options = ho.service;
  const FakeWorkerOptions worker_options = ho.worker;
  WorkerPoolOptions po;
  for (int i = 0; i < num_workers; ++i) {
    FakeWorkerOptions wo = worker_options;
    wo.id = "fake-" + std::to_string(i);
    workers_.push_back(std::make_unique<FakeWorker>(wo));
    workers_.back()->Serve();
    po.static_workers.push_back(workers_.back()->address());
  }
  for (const std::string& w : ho.external_workers) po.static_workers.push_back(w);
  po.channel_factory = NewWorkerChannel;
  // Tests take a worker out with one failed probe (SetLoadFails + Refresh).
  po.unhealthy_after = 1;
  ledger_ = ho.ledger != nullptr ? std::move(ho.ledger) : NewMemoryLedger();
  pool_ = std::make_unique<WorkerPool>(po, NewGrpcProber(absl::Seconds(5)), nullptr);
  pool_->Refresh();
  registry_ = std::make_shared<prometheus::Registry>();
  metrics_ = std::make_unique<RouterMetrics>(*registry_);
  codec_ = ho.codec != nullptr ? std::move(ho.codec) : std::make_unique<ByteTextCodec>();
  service_ = std::make_unique<ChatServiceImpl>(options, ledger_.get(), pool_.get(), codec_.get(),
                                               metrics_.get());
  ServerOptions so;
  so.drain_timeout = absl::Seconds(1);
  server_ = GrpcServer::Start(so, {{service_.get(), v1::ChatService::service_full_name()}}).value();
  address_ = server_->address();
  stub_ =
      v1::ChatService::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
}

RouterHarness::~RouterHarness() {
  server_.reset();
  for (auto& w : workers_) w->Shutdown();
}

TurnResult RouterHarness::Complete(const v1::CompleteRequest& request, absl::Duration timeout) {
  return CompleteAs("", request, timeout);
}

TurnResult RouterHarness::CompleteAs(const std::string& api_key, const v1::CompleteRequest& request,
                                     absl::Duration timeout) {
  TurnResult r;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  if (!api_key.empty()) ctx.AddMetadata("authorization", "Bearer " + api_key);
  auto reader = stub_->Complete(&ctx, request);
  v1::CompleteEvent e;
  while (reader->Read(&e)) {
    if (e.has_chunk()) {
      r.tokens.insert(r.tokens.end(), e.chunk().token_ids().begin(), e.chunk().token_ids().end());
      r.text += e.chunk().text();
    }
    r.events.push_back(e);
  }
  r.status = reader->Finish();
  return r;
}

v1::CompleteRequest RouterHarness::UserTurn(const std::string& id, const std::string& text,
                                            const std::string& salt) {
  v1::CompleteRequest r;
  r.set_conversation_id(id);
  r.set_cache_salt(salt);
  auto* m = r.add_messages();
  m->set_role("user");
  m->set_content(text);
  return r;
}

double RouterHarness::Counter(const std::string& name, const std::string& label,
                              const std::string& value) {
  double sum = 0;
  for (const auto& family : registry_->Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      for (const auto& l : m.label) {
        if (l.name == label && l.value == value) sum += m.counter.value;
      }
    }
  }
  return sum;
}

}  // namespace hc::router::testing
