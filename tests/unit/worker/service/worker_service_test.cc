#include "worker/service/worker_service.h"

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/server.h"
#include "common/text/stop_limits.h"
#include "common/token_hash.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "tests/unit/worker/engine/fake_model.h"
#include "tests/unit/worker/runtime/host_cache_memory.h"
#include "worker/cache/conversation_cache.h"
#include "worker/service/worker_metrics.h"

namespace hc::worker {
namespace {

namespace pb = hybridcache::v1;
constexpr int kVocab = 97;
constexpr int kMaxWaiting = 4;
// Token id i adds the letter kLetters[i % 26] to the text (for stop strings).
constexpr char kLetters[] = "abcdefghijklmnopqrstuvwxyz";

using engine::GatedModel;

// Forwards to the real engine and lets a test wait for the service's calls:
// a Cancel, Submit attempts (whatever their answer), and Forget calls having
// returned to the handler.
class SignallingEngine final : public engine::Engine {
 public:
  explicit SignallingEngine(engine::Engine* inner) : inner_(inner) {}
  absl::Status Submit(engine::TurnSpec turn,
                      std::shared_ptr<engine::TurnObserver> observer) override {
    absl::Status s = inner_->Submit(std::move(turn), std::move(observer));
    absl::MutexLock lock(&mu_);
    ++submits_;
    return s;
  }
  void Cancel(const std::string& request_id) override {
    inner_->Cancel(request_id);
    cancelled_.Notify();
  }
  void Forget(const cache::ConversationKey& key, absl::AnyInvocable<void(bool) &&> done) override {
    inner_->Forget(key, std::move(done));
    absl::MutexLock lock(&mu_);
    ++forgets_returned_;
  }
  void Drain() override { inner_->Drain(); }
  bool AwaitIdle(absl::Duration timeout) override { return inner_->AwaitIdle(timeout); }
  void Stop() override { inner_->Stop(); }
  engine::EngineLoad Load() const override { return inner_->Load(); }

  void AwaitSubmits(int n) {
    absl::MutexLock lock(&mu_);
    const auto reached = [this, n] {
      mu_.AssertHeld();
      return submits_ >= n;
    };
    mu_.Await(absl::Condition(&reached));
  }
  // Whether `n` calls to Forget have returned within `timeout`.
  bool AwaitForgetsReturned(int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    const auto reached = [this, n] {
      mu_.AssertHeld();
      return forgets_returned_ >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }
  absl::Notification cancelled_;

 private:
  engine::Engine* inner_;
  absl::Mutex mu_;
  int submits_ ABSL_GUARDED_BY(mu_) = 0;
  int forgets_returned_ ABSL_GUARDED_BY(mu_) = 0;
};

// A real WorkerService on loopback over the real engine and cache, with the
// cache-reading fake model (tests/unit/worker/engine/fake_model.h).
class WorkerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    memory_ =
        runtime::testing::MakeHostCacheMemory(
            {.num_layers = 1, .num_blocks = 512, .block_size = 4, .num_kv_heads = 1, .head_dim = 1},
            {.num_layers = 1,
             .num_slots = 16,
             .conv_dim = 1,
             .conv_width = 2,
             .num_heads = 1,
             .head_dim = 1,
             .state_size = 1},
            1)
            .value();
    cache_ = cache::ConversationCache::Create({.memory = memory_.get()}).value();
    model_ = std::make_unique<engine::FakeModel>(memory_.get(), kVocab);
    gate_ = std::make_unique<GatedModel>(model_.get());
    metrics_ = std::make_unique<WorkerMetrics>(registry_);
    engine::EngineOptions eo;
    eo.model = gate_.get();
    eo.cache = cache_.get();
    eo.metrics = metrics_.get();
    eo.max_model_len = 256;
    eo.max_batch_tokens = 32;
    eo.max_waiting = kMaxWaiting;
    eo.token_bytes = [](int32_t id) { return std::string_view(kLetters).substr(id % 26, 1); };
    engine_ = engine::Engine::Create(eo).value();
    signalling_ = std::make_unique<SignallingEngine>(engine_.get());
    service_ = std::make_unique<WorkerServiceImpl>(
        WorkerServiceOptions{.worker_id = "w0",
                             .engine = signalling_.get(),
                             .max_model_len = 256,
                             .vocab_size = kVocab,
                             .on_drain = [this] { server_->SetServing(false); }});
    server_ =
        GrpcServer::Start({}, {{service_.get(), pb::WorkerService::service_full_name()}}).value();
    stub_ = pb::WorkerService::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    server_->Shutdown();
    engine_->Stop();
  }

  struct Outcome {
    grpc::Status status;
    std::vector<pb::ExecuteEvent> events;
    std::vector<uint32_t> tokens;
    const pb::ExecuteStarted* started() const {
      for (const auto& e : events)
        if (e.has_started()) return &e.started();
      return nullptr;
    }
    const pb::CommitReport* committed() const {
      for (const auto& e : events)
        if (e.has_committed()) return &e.committed();
      return nullptr;
    }
    bool missing() const {
      for (const auto& e : events)
        if (e.has_state_missing()) return true;
      return false;
    }
  };

  // With cancel_after_tokens >= 0: cancels once that many tokens arrived,
  // then (after the server passed the cancel to the engine) releases the gate.
  // With a deadline, a stream that should have been refused at once cannot
  // hang the test when it is queued instead.
  Outcome Execute(const pb::ExecuteRequest& req, int cancel_after_tokens = -1,
                  std::optional<absl::Duration> deadline = std::nullopt) {
    grpc::ClientContext ctx;
    if (deadline.has_value()) ctx.set_deadline(absl::ToChronoTime(absl::Now() + *deadline));
    auto reader = stub_->Execute(&ctx, req);
    Outcome out;
    pb::ExecuteEvent ev;
    bool cancelled = false;
    while (reader->Read(&ev)) {
      for (uint32_t t : ev.tokens().token_ids()) out.tokens.push_back(t);
      out.events.push_back(ev);
      if (!cancelled && cancel_after_tokens >= 0 &&
          static_cast<int>(out.tokens.size()) >= cancel_after_tokens) {
        cancelled = true;
        ctx.TryCancel();
        signalling_->cancelled_.WaitForNotification();
        gate_->Release();
      }
    }
    out.status = reader->Finish();
    return out;
  }

  static pb::ExecuteRequest Turn(const std::string& id, std::vector<uint32_t> suffix,
                                 int max_tokens) {
    pb::ExecuteRequest r;
    r.mutable_key()->set_conversation_id(id);
    r.set_request_id(id + "-" + std::to_string(suffix.size()));
    r.set_new_round(1);
    for (uint32_t t : suffix) r.add_suffix_token_ids(t);
    r.mutable_sampling()->set_temperature(0.0f);
    r.mutable_sampling()->set_max_tokens(max_tokens);
    r.mutable_sampling()->set_ignore_eos(true);
    return r;
  }

  // The value of a counter sample of the worker's registry (0 when absent).
  double CounterValue(const std::string& name, const std::string& label, const std::string& value) {
    for (const prometheus::MetricFamily& family : registry_.Collect()) {
      if (family.name != name) continue;
      for (const prometheus::ClientMetric& m : family.metric) {
        for (const prometheus::ClientMetric::Label& l : m.label) {
          if (l.name == label && l.value == value) return m.counter.value;
        }
      }
    }
    return 0.0;
  }

  // Sends `bytes` as the request of `method` ("Execute", "Load", ...) and
  // returns the status. For Execute only an error answer (no stream message)
  // reads back as itself.
  grpc::Status RawCall(const std::string& method, const std::string& bytes) {
    grpc::GenericStub stub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1), response;
    grpc::Status result;
    absl::Notification done;
    stub.UnaryCall(&ctx, "/hybridcache.v1.WorkerService/" + method, grpc::StubOptions(), &request,
                   &response, [&](grpc::Status s) {
                     result = std::move(s);
                     done.Notify();
                   });
    done.WaitForNotification();
    return result;
  }

  pb::LoadReport Load() {
    grpc::ClientContext ctx;
    pb::LoadReport report;
    EXPECT_TRUE(stub_->Load(&ctx, pb::LoadRequest(), &report).ok());
    return report;
  }

  prometheus::Registry registry_;
  std::unique_ptr<runtime::BackendCacheMemory> memory_;
  std::unique_ptr<cache::ConversationCache> cache_;
  std::unique_ptr<engine::FakeModel> model_;
  std::unique_ptr<GatedModel> gate_;
  std::unique_ptr<WorkerMetrics> metrics_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<SignallingEngine> signalling_;
  std::unique_ptr<WorkerServiceImpl> service_;
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<pb::WorkerService::Stub> stub_;
};

TEST_F(WorkerServiceTest, SecondTurnIsServedFromCacheAndEqualsRecompute) {
  const std::vector<uint32_t> first = {10, 11, 12, 13, 14, 15, 16};
  Outcome t1 = Execute(Turn("a", first, 5));
  ASSERT_TRUE(t1.status.ok()) << t1.status.error_message();
  ASSERT_NE(t1.committed(), nullptr);
  EXPECT_EQ(t1.tokens.size(), 5u);
  EXPECT_EQ(t1.started()->cached_tokens(), 0u);
  EXPECT_EQ(t1.committed()->state().round(), 1u);
  EXPECT_EQ(t1.committed()->state().num_tokens(), first.size() + 5 - 1);

  // Turn 2: send the uncomputed last token plus the new suffix.
  const std::vector<uint32_t> second = {20, 21, 22};
  pb::ExecuteRequest r2 = Turn("a", {t1.tokens.back(), 20, 21, 22}, 4);
  *r2.mutable_expected() = t1.committed()->state();
  r2.set_new_round(2);
  Outcome t2 = Execute(r2);
  ASSERT_TRUE(t2.status.ok()) << t2.status.error_message();
  EXPECT_EQ(t2.started()->cached_tokens(), t1.committed()->state().num_tokens());
  EXPECT_EQ(t2.started()->prompt_tokens(), first.size() + 5 + second.size());

  // The same context from scratch on another conversation.
  std::vector<uint32_t> all = first;
  all.insert(all.end(), t1.tokens.begin(), t1.tokens.end());
  all.insert(all.end(), second.begin(), second.end());
  Outcome fresh = Execute(Turn("b", all, 4));
  ASSERT_TRUE(fresh.status.ok());
  EXPECT_EQ(t2.tokens, fresh.tokens);
  std::vector<int32_t> committed(all.begin(), all.end());
  committed.insert(committed.end(), t2.tokens.begin(), t2.tokens.end() - 1);
  EXPECT_EQ(t2.committed()->state().prefix_hash(), TokenHash<int32_t>(committed));
}

TEST_F(WorkerServiceTest, RewriteTurnResumesFromTheReportedSnapshot) {
  // Turn 1 asks for a snapshot after its 5 "message" tokens (2 more: the
  // generation prompt); the commit report says the worker holds it.
  const std::vector<uint32_t> first = {10, 11, 12, 13, 14, 1, 2};
  pb::ExecuteRequest r1 = Turn("a", first, 4);
  r1.set_snapshot_at(5);
  Outcome t1 = Execute(r1);
  ASSERT_TRUE(t1.status.ok()) << t1.status.error_message();
  ASSERT_TRUE(t1.committed()->has_snapshot());
  EXPECT_EQ(t1.committed()->snapshot().round(), 1u);
  EXPECT_EQ(t1.committed()->snapshot().num_tokens(), 5u);
  EXPECT_EQ(t1.committed()->snapshot().prefix_hash(),
            TokenHash<int32_t>(std::vector<int32_t>{10, 11, 12, 13, 14}));
  // Turn 2 rewrites everything after those 5 tokens: sent as a first turn.
  pb::ExecuteRequest r2 = Turn("a", {20, 21, 0, 30, 31, 1, 2}, 4);
  r2.set_has_history(true);
  for (const uint32_t t : {10, 11, 12, 13, 14}) r2.add_history_token_ids(t);
  r2.set_new_round(2);
  Outcome t2 = Execute(r2);
  ASSERT_TRUE(t2.status.ok()) << t2.status.error_message();
  EXPECT_EQ(t2.started()->cached_tokens(), 5u);
  EXPECT_FALSE(t2.committed()->has_snapshot());  // none asked for
  std::vector<uint32_t> all = {10, 11, 12, 13, 14, 20, 21, 0, 30, 31, 1, 2};
  Outcome fresh = Execute(Turn("b", all, 4));
  ASSERT_TRUE(fresh.status.ok());
  EXPECT_EQ(t2.tokens, fresh.tokens);
  EXPECT_EQ(CounterValue("hc_worker_snapshot_lookups_total", "result", "hit"), 1.0);
  EXPECT_EQ(CounterValue("hc_worker_snapshots_total", "event", "taken"), 1.0);
}

TEST_F(WorkerServiceTest, UnknownExpectedStateAnswersStateMissing) {
  pb::ExecuteRequest r = Turn("ghost", {5, 6}, 2);
  r.mutable_expected()->set_round(4);
  r.mutable_expected()->set_num_tokens(9);
  r.set_new_round(5);
  Outcome o = Execute(r);
  EXPECT_TRUE(o.status.ok());
  EXPECT_TRUE(o.missing());
  EXPECT_TRUE(o.tokens.empty());
}

TEST_F(WorkerServiceTest, TwoTenantsWithTheSameSaltAndIdNeverShareAState) {
  pb::ExecuteRequest a1 = Turn("same", {10, 11, 12}, 3);
  a1.mutable_key()->set_cache_salt("s");
  a1.mutable_key()->set_tenant("a");
  Outcome ta = Execute(a1);
  ASSERT_TRUE(ta.status.ok()) << ta.status.error_message();
  ASSERT_NE(ta.committed(), nullptr);

  // Tenant b claims a's committed state under the same salt and id: the
  // worker holds nothing of b's.
  pb::ExecuteRequest b2 = Turn("same", {ta.tokens.back(), 20}, 2);
  b2.mutable_key()->set_cache_salt("s");
  b2.mutable_key()->set_tenant("b");
  *b2.mutable_expected() = ta.committed()->state();
  b2.set_new_round(2);
  Outcome tb = Execute(b2);
  ASSERT_TRUE(tb.status.ok()) << tb.status.error_message();
  EXPECT_TRUE(tb.missing());
  EXPECT_TRUE(tb.tokens.empty());
  // Nor does the untenanted key see it.
  pb::ExecuteRequest none = b2;
  none.mutable_key()->clear_tenant();
  EXPECT_TRUE(Execute(none).missing());

  // Releasing b's key leaves a's state; a continues from its cache.
  pb::ReleaseRequest rel;
  *rel.mutable_key() = b2.key();
  pb::ReleaseResponse released;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Release(&ctx, rel, &released).ok());
  EXPECT_FALSE(released.released());
  pb::ExecuteRequest a2 = b2;
  a2.mutable_key()->set_tenant("a");
  Outcome ta2 = Execute(a2);
  ASSERT_TRUE(ta2.status.ok()) << ta2.status.error_message();
  EXPECT_FALSE(ta2.missing());
  EXPECT_EQ(ta2.started()->cached_tokens(), ta.committed()->state().num_tokens());
}

TEST_F(WorkerServiceTest, ClientCancelDiscardsTheTurnAndKeepsTheCommittedState) {
  // Turn 1 takes forward calls 1-3; turn 2 blocks in its third call, after
  // streaming two tokens, until the client's cancel reached the engine.
  gate_->BlockAt(6);
  Outcome t1 = Execute(Turn("c", {30, 31, 32, 33, 34}, 3));
  ASSERT_TRUE(t1.status.ok());
  pb::ExecuteRequest r2 = Turn("c", {t1.tokens.back(), 40, 41}, 200);
  *r2.mutable_expected() = t1.committed()->state();
  r2.set_new_round(2);
  Outcome cancelled = Execute(r2, /*cancel_after_tokens=*/2);
  EXPECT_EQ(cancelled.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(cancelled.committed(), nullptr);
  ASSERT_TRUE(engine_->AwaitIdle(absl::Seconds(10)));

  // The committed state of round 1 still serves the retried turn.
  r2.mutable_sampling()->set_max_tokens(6);
  r2.set_request_id("retry");
  Outcome retry = Execute(r2);
  ASSERT_TRUE(retry.status.ok()) << retry.status.error_message();
  EXPECT_EQ(retry.started()->cached_tokens(), t1.committed()->state().num_tokens());
  EXPECT_EQ(std::vector<uint32_t>(cancelled.tokens.begin(), cancelled.tokens.begin() + 2),
            std::vector<uint32_t>(retry.tokens.begin(), retry.tokens.begin() + 2));
}

TEST_F(WorkerServiceTest, MalformedRequestsGetTheRightStatusAndChangeNothing) {
  Outcome o = Execute(Turn("m", {5, kVocab + 3}, 2));
  EXPECT_EQ(o.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(o.status.error_message().find("vocabulary"), std::string::npos);
  o = Execute(Turn("m", {}, 2));
  EXPECT_EQ(o.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  o = Execute(Turn("m", std::vector<uint32_t>(300, 7), 2));
  EXPECT_EQ(o.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  o = Execute(Turn("", {5}, 2));
  EXPECT_EQ(o.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  pb::ExecuteRequest zero = Turn("m", {5}, 1);
  zero.mutable_sampling()->set_max_tokens(0);
  EXPECT_EQ(Execute(zero).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Load().committed_conversations(), 0u);
  // Still serving.
  EXPECT_TRUE(Execute(Turn("m", {5, 6}, 2)).status.ok());
  EXPECT_EQ(Load().committed_conversations(), 1u);
}

TEST_F(WorkerServiceTest, StopConditionsBeyondTheRoutersLimitsAreRefusedByTheWorkerToo) {
  pb::ExecuteRequest many = Turn("s", {5, 6}, 4);
  for (int i = 0; i <= kMaxStopStrings; ++i) many.mutable_sampling()->add_stop("zz");
  Outcome o = Execute(many);
  EXPECT_EQ(o.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(o.status.error_message().find("has 17 strings; at most 16"), std::string::npos)
      << o.status.error_message();
  pb::ExecuteRequest longer = Turn("s", {5, 6}, 4);
  longer.mutable_sampling()->add_stop(std::string(kMaxStopStringBytes + 1, 'z'));
  o = Execute(longer);
  EXPECT_EQ(o.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(o.status.error_message().find("257 bytes; at most 256"), std::string::npos)
      << o.status.error_message();
  pb::ExecuteRequest ids = Turn("s", {5, 6}, 4);
  for (int i = 0; i <= kMaxStopTokenIds; ++i) ids.mutable_sampling()->add_stop_token_ids(7);
  EXPECT_EQ(Execute(ids).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Load().committed_conversations(), 0u);
}

TEST_F(WorkerServiceTest, StopStringCutIsReportedInTheCommitReport) {
  const Outcome probe = Execute(Turn("probe", {5, 6, 7}, 6));
  ASSERT_TRUE(probe.status.ok()) << probe.status.error_message();
  ASSERT_EQ(probe.tokens.size(), 6u);
  std::string text;
  for (const uint32_t id : probe.tokens) text += kLetters[id % 26];
  // The letters of tokens 2 and 3 (first occurrence there): stops in token 3.
  const std::string stop = text.substr(2, 2);
  ASSERT_EQ(text.find(stop), 2u) << text;
  pb::ExecuteRequest req = Turn("cut", {5, 6, 7}, 6);
  req.mutable_sampling()->add_stop(stop);
  const Outcome o = Execute(req);
  ASSERT_TRUE(o.status.ok()) << o.status.error_message();
  EXPECT_EQ(o.tokens.size(), 4u);
  ASSERT_NE(o.committed(), nullptr);
  EXPECT_EQ(o.committed()->finish_reason(), "stop");
  ASSERT_TRUE(o.committed()->has_stop_string());
  EXPECT_EQ(o.committed()->stop_string().reply_bytes(), 2u);
  EXPECT_EQ(o.committed()->stop_string().tokens_before(), 2u);
  // It began before the last token: the turn started from nothing, so nothing is kept.
  EXPECT_EQ(o.committed()->state().num_tokens(), 0u);
  EXPECT_FALSE(probe.committed()->has_stop_string());
}

TEST_F(WorkerServiceTest, UnparsableRequestsAreInvalidArgumentWithAMessage) {
  // conversation_id holding invalid UTF-8, a truncated request, a bad tag.
  std::string bad_utf8 = Turn("abc", {5, 6}, 2).SerializeAsString();
  bad_utf8[bad_utf8.find("abc")] = static_cast<char>(0xC3);
  const std::string good = Turn("abc", {5, 6}, 2).SerializeAsString();
  const std::pair<std::string, std::string> cases[] = {
      {"Execute", bad_utf8},
      {"Execute", good.substr(0, good.size() - 3)},
      {"Release", std::string("\x0a\x05\x12\x03a\xff", 6)},
      {"Load", std::string("\xff\xff\xff\xff", 4)},
      {"Drain", std::string("\x08", 1)},
  };
  for (const auto& [method, bytes] : cases) {
    const grpc::Status s = RawCall(method, bytes);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << method << ": " << s.error_message();
    EXPECT_NE(s.error_message().find("malformed request"), std::string::npos) << s.error_message();
    EXPECT_NE(s.error_message().find("hybridcache.v1." +
                                     std::string(method == "Load"      ? "LoadRequest"
                                                 : method == "Drain"   ? "DrainRequest"
                                                 : method == "Release" ? "ReleaseRequest"
                                                                       : "ExecuteRequest")),
              std::string::npos)
        << s.error_message();
  }
  EXPECT_FALSE(Load().draining());
  EXPECT_EQ(Load().committed_conversations(), 0u);
  EXPECT_TRUE(Execute(Turn("abc", {5, 6}, 2)).status.ok());
}

TEST_F(WorkerServiceTest, InvalidFieldsAreRejectedWithAMessageNamingTheField) {
  struct Case {
    std::function<void(pb::ExecuteRequest*)> mutate;
    grpc::StatusCode code;
    std::string message_part;
  };
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<Case> cases = {
      {[](pb::ExecuteRequest* r) { r->mutable_key()->set_conversation_id("a b"); },
       grpc::StatusCode::INVALID_ARGUMENT, "conversation_id may only contain"},
      {[](pb::ExecuteRequest* r) { r->mutable_key()->set_conversation_id(std::string(129, 'x')); },
       grpc::StatusCode::INVALID_ARGUMENT, "conversation_id must have 1 to 128"},
      {[](pb::ExecuteRequest* r) { r->mutable_key()->set_cache_salt(std::string(1025, 's')); },
       grpc::StatusCode::INVALID_ARGUMENT, "cache_salt"},
      {[](pb::ExecuteRequest* r) { r->set_request_id(std::string(1025, 'q')); },
       grpc::StatusCode::INVALID_ARGUMENT, "request_id"},
      {[](pb::ExecuteRequest* r) { r->clear_suffix_token_ids(); },
       grpc::StatusCode::INVALID_ARGUMENT, "suffix_token_ids is empty"},
      {[](pb::ExecuteRequest* r) { r->add_suffix_token_ids(kVocab); },
       grpc::StatusCode::INVALID_ARGUMENT, "suffix_token_ids[2] = 97 is outside the vocabulary"},
      {[](pb::ExecuteRequest* r) { r->add_suffix_token_ids(UINT32_MAX); },
       grpc::StatusCode::INVALID_ARGUMENT, "suffix_token_ids[2]"},
      {[](pb::ExecuteRequest* r) {
         r->set_has_history(true);
         r->add_history_token_ids(1);
         r->add_history_token_ids(kVocab + 1);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "history_token_ids[1] = 98"},
      {[](pb::ExecuteRequest* r) { r->set_new_round(0); }, grpc::StatusCode::INVALID_ARGUMENT,
       "new_round"},
      {[](pb::ExecuteRequest* r) { r->set_snapshot_at(0); }, grpc::StatusCode::INVALID_ARGUMENT,
       "snapshot_at 0 is outside the turn's context [1, 2]"},
      {[](pb::ExecuteRequest* r) { r->set_snapshot_at(3); }, grpc::StatusCode::INVALID_ARGUMENT,
       "snapshot_at 3"},
      {[inf](pb::ExecuteRequest* r) { r->mutable_sampling()->set_temperature(inf); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling.temperature"},
      {[](pb::ExecuteRequest* r) { r->mutable_sampling()->set_temperature(std::nanf("")); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling.temperature"},
      {[](pb::ExecuteRequest* r) { r->mutable_sampling()->set_top_p(0.0f); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling.top_p"},
      {[](pb::ExecuteRequest* r) { r->mutable_sampling()->set_top_k(UINT32_MAX); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling.top_k"},
      {[](pb::ExecuteRequest* r) { r->mutable_sampling()->add_stop_token_ids(kVocab); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling.stop_token_ids[0]"},
      {[](pb::ExecuteRequest* r) {
         for (int i = 0; i < 17; ++i) r->mutable_sampling()->add_stop("x");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling.stop has 17"},
      {[](pb::ExecuteRequest* r) {
         r->set_has_history(true);
         for (int i = 0; i < 254; ++i) r->add_history_token_ids(3);
       },
       grpc::StatusCode::RESOURCE_EXHAUSTED, "max_model_len 256"},
      {[](pb::ExecuteRequest* r) {
         r->mutable_expected()->set_round(1);
         r->mutable_expected()->set_num_tokens(UINT32_MAX);
         r->set_new_round(2);
       },
       grpc::StatusCode::RESOURCE_EXHAUSTED, "max_model_len 256"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    pb::ExecuteRequest r = Turn("f", {5, 6}, 2);
    cases[i].mutate(&r);
    const Outcome o = Execute(r, -1, absl::Seconds(30));
    EXPECT_EQ(o.status.error_code(), cases[i].code)
        << "case " << i << ": " << o.status.error_message();
    EXPECT_NE(o.status.error_message().find(cases[i].message_part), std::string::npos)
        << "case " << i << ": " << o.status.error_message();
    EXPECT_TRUE(o.events.empty()) << "case " << i;
  }
  pb::ReleaseRequest release;
  release.mutable_key()->set_conversation_id("a/b");
  pb::ReleaseResponse released;
  grpc::ClientContext ctx;
  EXPECT_EQ(stub_->Release(&ctx, release, &released).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Load().committed_conversations(), 0u);
  EXPECT_TRUE(Execute(Turn("f", {5, 6}, 2)).status.ok());
}

TEST_F(WorkerServiceTest, LoadReleaseAndDrain) {
  ASSERT_TRUE(Execute(Turn("r", {5, 6, 7}, 2)).status.ok());
  pb::LoadReport load = Load();
  EXPECT_EQ(load.worker_id(), "w0");
  EXPECT_EQ(load.committed_conversations(), 1u);
  EXPECT_EQ(load.total_kv_blocks(), 512u);
  EXPECT_EQ(load.vocab_size(), static_cast<uint32_t>(kVocab));
  EXPECT_EQ(load.max_model_len(), 256u);

  pb::ReleaseRequest rel;
  rel.mutable_key()->set_conversation_id("r");
  pb::ReleaseResponse released;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->Release(&ctx, rel, &released).ok());
    EXPECT_TRUE(released.released());
  }
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->Release(&ctx, rel, &released).ok());
    EXPECT_FALSE(released.released());
  }
  {
    grpc::ClientContext ctx;
    pb::DrainResponse drained;
    ASSERT_TRUE(stub_->Drain(&ctx, pb::DrainRequest(), &drained).ok());
  }
  EXPECT_TRUE(Load().draining());
  const Outcome late = Execute(Turn("late", {5}, 1));
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(late.status.error_message().find("draining"), std::string::npos)
      << late.status.error_message();
  EXPECT_TRUE(late.events.empty());
}

TEST_F(WorkerServiceTest, LoadReportsTheAdmissionBound) {
  EXPECT_EQ(Load().max_waiting(), static_cast<uint32_t>(kMaxWaiting));
}

TEST_F(WorkerServiceTest, ExecuteBeyondMaxWaitingIsRefusedAndChangesNothing) {
  // The first turn holds the engine thread in its first step, so every later
  // turn stays queued until the gate opens.
  gate_->BlockAt(1);
  Outcome running;
  std::thread running_thread([&] { running = Execute(Turn("running", {5, 6, 7}, 2)); });
  gate_->AwaitBlocked();
  std::vector<Outcome> waiting(kMaxWaiting);
  std::vector<std::thread> threads;
  for (int i = 0; i < kMaxWaiting; ++i) {
    threads.emplace_back([&, i] {
      waiting[i] = Execute(Turn("w" + std::to_string(i), {5, 6, 7}, 2));
    });
  }
  signalling_->AwaitSubmits(1 + kMaxWaiting);
  pb::LoadReport load = Load();
  EXPECT_EQ(load.num_waiting(), static_cast<uint32_t>(kMaxWaiting));
  EXPECT_EQ(load.max_waiting(), static_cast<uint32_t>(kMaxWaiting));

  const Outcome over = Execute(Turn("over", {5, 6, 7}, 2), -1, absl::Seconds(30));
  EXPECT_EQ(over.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(over.status.error_message(), "worker busy: 4 turns waiting (--max_waiting 4)");
  EXPECT_TRUE(over.events.empty());
  EXPECT_EQ(CounterValue("hc_worker_rejected_requests_total", "reason", "queue_full"), 1.0);
  EXPECT_EQ(Load().num_waiting(), static_cast<uint32_t>(kMaxWaiting));

  gate_->Release();
  running_thread.join();
  for (auto& t : threads) t.join();
  EXPECT_TRUE(running.status.ok()) << running.status.error_message();
  for (const Outcome& w : waiting) {
    EXPECT_TRUE(w.status.ok()) << w.status.error_message();
    EXPECT_NE(w.committed(), nullptr);
  }
  ASSERT_TRUE(engine_->AwaitIdle(absl::Seconds(10)));
  load = Load();
  EXPECT_EQ(load.num_waiting(), 0u);
  EXPECT_EQ(load.committed_conversations(), static_cast<uint32_t>(1 + kMaxWaiting));
  // Nothing of the refused turn was kept: it runs now, from scratch.
  const Outcome retried = Execute(Turn("over", {5, 6, 7}, 2));
  ASSERT_TRUE(retried.status.ok()) << retried.status.error_message();
  EXPECT_EQ(retried.started()->cached_tokens(), 0u);
}

TEST_F(WorkerServiceTest, RacingExecuteStreamsNeverOvershootMaxWaiting) {
  gate_->BlockAt(1);
  Outcome running;
  std::thread running_thread([&] { running = Execute(Turn("running", {5, 6, 7}, 2)); });
  gate_->AwaitBlocked();
  constexpr int kStreams = kMaxWaiting + 12;
  std::vector<grpc::StatusCode> codes(kStreams);
  std::vector<std::thread> threads;
  absl::Notification go;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      go.WaitForNotification();
      codes[i] = Execute(Turn("race" + std::to_string(i), {5, 6, 7}, 2)).status.error_code();
    });
  }
  go.Notify();
  signalling_->AwaitSubmits(1 + kStreams);
  // Every stream was answered by the engine while nothing could leave the
  // queue: exactly kMaxWaiting were queued.
  EXPECT_EQ(Load().num_waiting(), static_cast<uint32_t>(kMaxWaiting));
  gate_->Release();
  running_thread.join();
  for (auto& t : threads) t.join();
  int ok = 0, refused = 0;
  for (const grpc::StatusCode c : codes) {
    ok += c == grpc::StatusCode::OK;
    refused += c == grpc::StatusCode::RESOURCE_EXHAUSTED;
  }
  EXPECT_EQ(ok, kMaxWaiting);
  EXPECT_EQ(refused, kStreams - kMaxWaiting);
  EXPECT_EQ(CounterValue("hc_worker_rejected_requests_total", "reason", "queue_full"),
            static_cast<double>(kStreams - kMaxWaiting));
}

TEST_F(WorkerServiceTest, ReleaseFinishesFromTheEngineWithoutHoldingACallbackThread) {
  ASSERT_TRUE(Execute(Turn("kept", {5, 6, 7}, 2)).status.ok());
  ASSERT_TRUE(engine_->AwaitIdle(absl::Seconds(10)));
  // Hold the engine thread in the next step (another conversation's turn).
  gate_->BlockAt(model_->forward_calls() + 1);
  Outcome busy;
  std::thread busy_thread([&] { busy = Execute(Turn("busy", {8, 9}, 2)); });
  gate_->AwaitBlocked();

  pb::ReleaseRequest request;
  request.mutable_key()->set_conversation_id("kept");
  pb::ReleaseResponse response;
  grpc::ClientContext ctx;
  grpc::Status status;
  absl::Notification rpc_done;
  stub_->async()->Release(&ctx, &request, &response, [&](grpc::Status s) {
    status = std::move(s);
    rpc_done.Notify();
  });
  // The handler's call into the engine returns while the engine thread is
  // still held: the callback thread is free again. (A handler that waited
  // for the engine would only get here after the gate opens.)
  EXPECT_TRUE(signalling_->AwaitForgetsReturned(1, absl::Seconds(30)))
      << "the Release handler waited for the engine thread";
  EXPECT_FALSE(rpc_done.HasBeenNotified()) << "answered before the engine forgot the state";
  gate_->Release();
  rpc_done.WaitForNotification();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(response.released());
  busy_thread.join();
  EXPECT_TRUE(busy.status.ok());
  EXPECT_EQ(Load().committed_conversations(), 1u);  // only "busy" is left
}

}  // namespace
}  // namespace hc::worker
