// ChatService with API keys: authentication, salt rules, tenants kept apart
// under the same conversation id and salt, worker ids for admins only, and
// per-tenant quotas (concurrent turns, conversations, tokens per minute)
// refused exactly past their limits with a RetryInfo.
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "common/grpc_status.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "router/ledger/memory_ledger.h"
#include "router/tenancy/api_keys.h"
#include "router/tenancy/quotas.h"
#include "tests/unit/router/service/router_harness.h"

namespace hc::router {
namespace {

namespace v1 = hybridcache::v1;
using testing::HarnessOptions;
using testing::RouterHarness;
using testing::TurnResult;

// A keys file in a temp dir, opened as a store.
class Keys {
 public:
  explicit Keys(const std::vector<std::string>& entries) {
    char tmpl[] = "/tmp/hc-tenant-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    std::ofstream(dir_ + "/keys.json") << "{\"keys\": [" << absl::StrJoin(entries, ",") << "]}";
    store_ = ApiKeyStore::Open({.path = dir_ + "/keys.json"}).value();
  }
  ~Keys() { std::filesystem::remove_all(dir_); }
  ApiKeyStore* store() { return store_.get(); }
  // LedgerOptions::tenant_conversation_limit from these keys.
  std::function<uint64_t(std::string_view)> conversation_limit() {
    return [s = store_.get()](std::string_view t) { return s->LimitsOf(t).max_conversations; };
  }

 private:
  std::string dir_;
  std::unique_ptr<ApiKeyStore> store_;
};

std::string Key(const std::string& key, const std::string& tenant, const std::string& rest) {
  return absl::StrCat(R"({"sha256": ")", HashApiKey(key), R"(", "tenant": ")", tenant, "\", ", rest,
                      "}");
}

// The google.rpc.RetryInfo delay in a status's grpc-status-details-bin.
absl::Duration RetryDelay(const grpc::Status& s) {
  google::rpc::Status details;
  EXPECT_TRUE(details.ParseFromString(s.error_details())) << "no google.rpc.Status details";
  EXPECT_EQ(details.code(), static_cast<int>(s.error_code()));
  for (const auto& any : details.details()) {
    google::rpc::RetryInfo info;
    if (any.UnpackTo(&info)) {
      return absl::Seconds(info.retry_delay().seconds()) +
             absl::Nanoseconds(info.retry_delay().nanos());
    }
  }
  ADD_FAILURE() << "no RetryInfo in the details";
  return absl::ZeroDuration();
}

grpc::Status Get(RouterHarness& h, const std::string& api_key, const std::string& id,
                 const std::string& salt, v1::Conversation* out) {
  grpc::ClientContext ctx;
  if (!api_key.empty()) ctx.AddMetadata("authorization", "Bearer " + api_key);
  v1::GetConversationRequest req;
  req.set_conversation_id(id);
  req.set_cache_salt(salt);
  return h.stub().GetConversation(&ctx, req, out);
}

grpc::Status Delete(RouterHarness& h, const std::string& api_key, const std::string& id,
                    const std::string& salt) {
  grpc::ClientContext ctx;
  if (!api_key.empty()) ctx.AddMetadata("authorization", "Bearer " + api_key);
  v1::DeleteConversationRequest req;
  req.set_conversation_id(id);
  req.set_cache_salt(salt);
  v1::DeleteConversationResponse resp;
  return h.stub().DeleteConversation(&ctx, req, &resp);
}

// Two tenants (a with an admin key too) and the service options using them.
class TenantTest : public ::testing::Test {
 protected:
  TenantTest()
      : keys_({Key("key-a", "a", R"("salts": ["s"], "salt_prefix": "a-")"),
               Key("key-a-admin", "a", R"("salts": ["s"], "admin": true)"),
               Key("key-b", "b", R"("salts": ["s"])")}) {}
  HarnessOptions Options() {
    HarnessOptions o;
    o.service.api_keys = keys_.store();
    o.service.quotas = &quotas_;
    return o;
  }
  Keys keys_;
  LocalQuotas quotas_;
};

TEST_F(TenantTest, NoKeyOrAnUnknownKeyIsUnauthenticatedAndChangesNothing) {
  RouterHarness h(1, Options());
  for (const std::string& key : {std::string(), std::string("wrong")}) {
    TurnResult r = h.CompleteAs(key, RouterHarness::UserTurn("c", "hi", "s"));
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << key;
    EXPECT_EQ(r.status.error_message(), "missing or invalid API key");
    EXPECT_TRUE(r.events.empty());
    v1::Conversation conv;
    EXPECT_EQ(Get(h, key, "c", "s", &conv).error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(Delete(h, key, "c", "s").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_TRUE(h.worker(0).requests().empty());
  EXPECT_EQ(h.ledger().CountConversations().value(), 0u);
  EXPECT_EQ(h.Counter("hc_router_tenant_refusals_total", "reason", "unauthenticated"), 6);
}

TEST_F(TenantTest, ASaltOutsideTheKeysRulesIsPermissionDenied) {
  RouterHarness h(1, Options());
  TurnResult r = h.CompleteAs("key-b", RouterHarness::UserTurn("c", "hi", "a-1"));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(r.status.error_message().find("1 listed salt"), std::string::npos)
      << r.status.error_message();
  EXPECT_EQ(r.status.error_message().find("starting with"), std::string::npos)
      << "key b's rule only, nothing of tenant a's: " << r.status.error_message();
  v1::Conversation conv;
  EXPECT_EQ(Get(h, "key-b", "c", "other", &conv).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Delete(h, "key-b", "c", "other").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(h.CompleteAs("key-a", RouterHarness::UserTurn("c", "hi", "a-1")).status.ok());
  EXPECT_EQ(h.Counter("hc_router_tenant_refusals_total", "reason", "permission_denied"), 3);
}

TEST_F(TenantTest, TenantsNeverMeetUnderTheSameConversationIdAndSalt) {
  RouterHarness h(1, Options());
  TurnResult a1 = h.CompleteAs("key-a", RouterHarness::UserTurn("c", "hello from a", "s"));
  ASSERT_TRUE(a1.status.ok()) << a1.status.error_message();

  // B can neither read nor delete A's conversation.
  v1::Conversation conv;
  EXPECT_EQ(Get(h, "key-b", "c", "s", &conv).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Delete(h, "key-b", "c", "s").error_code(), grpc::StatusCode::NOT_FOUND);
  // B's turn under the same id and salt starts a conversation of its own,
  // with nothing of A's cached.
  TurnResult b1 = h.CompleteAs("key-b", RouterHarness::UserTurn("c", "hello from b", "s"));
  ASSERT_TRUE(b1.status.ok()) << b1.status.error_message();
  EXPECT_EQ(b1.completed()->committed_round(), 1u);
  EXPECT_EQ(b1.started()->cached_tokens(), 0u);
  EXPECT_EQ(h.worker(0).requests().back().key().tenant(), "b");

  // A's conversation is untouched and continues from its cache.
  ASSERT_TRUE(Get(h, "key-a", "c", "s", &conv).ok());
  EXPECT_EQ(conv.committed_round(), 1u);
  ASSERT_EQ(conv.messages_size(), 2);
  EXPECT_EQ(conv.messages(0).content(), "hello from a");
  TurnResult a2 = h.CompleteAs("key-a", RouterHarness::UserTurn("c", "again", "s"));
  ASSERT_TRUE(a2.status.ok());
  EXPECT_EQ(a2.completed()->committed_round(), 2u);
  EXPECT_GT(a2.started()->cached_tokens(), 0u);
  // B deletes its own; A's stays.
  EXPECT_TRUE(Delete(h, "key-b", "c", "s").ok());
  EXPECT_TRUE(Get(h, "key-a", "c", "s", &conv).ok());
  EXPECT_EQ(h.ledger().Get(LedgerKey{"s", "c", "a"})->round, 2u);
  EXPECT_FALSE(h.ledger().Get(LedgerKey{"s", "c"}).ok()) << "no untenanted entry";
  EXPECT_EQ(h.Counter("hc_router_tenant_turns_total", "tenant", "a"), 2);
  EXPECT_EQ(h.Counter("hc_router_tenant_turns_total", "tenant", "b"), 1);
}

TEST_F(TenantTest, OnlyAdminKeysSeeWorkerIds) {
  RouterHarness h(1, Options());
  TurnResult r = h.CompleteAs("key-a", RouterHarness::UserTurn("c", "hi", "s"));
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.started()->worker_id(), "");
  v1::Conversation conv;
  ASSERT_TRUE(Get(h, "key-a", "c", "s", &conv).ok());
  EXPECT_EQ(conv.worker_id(), "");
  ASSERT_TRUE(Get(h, "key-a-admin", "c", "s", &conv).ok());
  EXPECT_EQ(conv.worker_id(), h.worker(0).address());
  TurnResult admin = h.CompleteAs("key-a-admin", RouterHarness::UserTurn("c", "more", "s"));
  ASSERT_TRUE(admin.status.ok());
  EXPECT_EQ(admin.started()->worker_id(), h.worker(0).address());
}

TEST(TenantQuotaTest, ConcurrentTurnsPastTheLimitAreRefusedWithARetryDelay) {
  Keys keys({Key("k", "t", R"("salts": ["s"], "limits": {"max_concurrent_turns": 1})"),
             Key("other", "u", R"("salts": ["s"], "limits": {"max_concurrent_turns": 1})")});
  LocalQuotas quotas;
  HarnessOptions o;
  o.service.api_keys = keys.store();
  o.service.quotas = &quotas;
  RouterHarness h(1, std::move(o));
  h.worker(0).BlockNext();
  TurnResult held;
  std::thread t([&] { held = h.CompleteAs("k", RouterHarness::UserTurn("c1", "hi", "s")); });
  h.worker(0).entered().WaitForNotification();
  TurnResult refused = h.CompleteAs("k", RouterHarness::UserTurn("c2", "hi", "s"));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.status.error_message().find("max_concurrent_turns"), std::string::npos);
  EXPECT_NE(refused.status.error_message().find("retry in 1s"), std::string::npos);
  EXPECT_EQ(RetryDelay(refused.status), kTurnRetryDelay);
  EXPECT_EQ(GrpcRetryDelay(refused.status), kTurnRetryDelay);
  EXPECT_TRUE(h.CompleteAs("other", RouterHarness::UserTurn("c2", "hi", "s")).status.ok())
      << "another tenant's turns are its own";
  h.worker(0).Unblock();
  t.join();
  ASSERT_TRUE(held.status.ok()) << held.status.error_message();
  EXPECT_TRUE(h.CompleteAs("k", RouterHarness::UserTurn("c2", "hi", "s")).status.ok());
  EXPECT_EQ(h.Counter("hc_router_tenant_refusals_total", "reason", "concurrent_turns"), 1);
}

// LocalQuotas whose first EndTurn is held until the test completes it, as a
// Redis EndTurn still on its way to the server would be.
class DeferredEndQuotas final : public TenantQuotas {
 public:
  void AdmitTurn(const std::string& tenant, const std::string& turn_id, const TenantLimits& limits,
                 absl::Duration lease, AdmitCallback done) override {
    inner_.AdmitTurn(tenant, turn_id, limits, lease, std::move(done));
  }
  void RenewTurn(const std::string&, const std::string&, absl::Duration) override {}
  // Holds the first EndTurn; later ones go straight through.
  void EndTurn(const std::string& tenant, const std::string& turn_id, EndCallback done) override {
    if (end_called_.HasBeenNotified()) return inner_.EndTurn(tenant, turn_id, std::move(done));
    tenant_ = tenant;
    turn_id_ = turn_id;
    done_ = std::move(done);
    end_called_.Notify();
  }
  void ChargeTokens(const std::string& tenant, uint64_t tokens,
                    const TenantLimits& limits) override {
    inner_.ChargeTokens(tenant, tokens, limits);
  }
  absl::Notification& end_called() { return end_called_; }
  void CompleteEnd() { inner_.EndTurn(tenant_, turn_id_, std::move(done_)); }

 private:
  LocalQuotas inner_;
  absl::Notification end_called_;
  std::string tenant_, turn_id_;
  EndCallback done_;
};

TEST(TenantQuotaTest, ATurnEndsForItsClientOnlyOnceItsQuotaSlotIsFree) {
  Keys keys({Key("k", "t", R"("salts": ["s"], "limits": {"max_concurrent_turns": 1})")});
  DeferredEndQuotas quotas;
  HarnessOptions o;
  o.service.api_keys = keys.store();
  o.service.quotas = &quotas;
  RouterHarness h(1, std::move(o));
  absl::Notification answered;
  TurnResult first;
  std::thread t([&] {
    first = h.CompleteAs("k", RouterHarness::UserTurn("c1", "hi", "s"));
    answered.Notify();
  });
  quotas.end_called().WaitForNotification();
  // The slot is not free yet: were the client answered now, its next turn
  // could be refused by its own finished one. (A bounded negative check.)
  EXPECT_FALSE(answered.WaitForNotificationWithTimeout(absl::Milliseconds(200)));
  quotas.CompleteEnd();
  t.join();
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_TRUE(h.CompleteAs("k", RouterHarness::UserTurn("c2", "hi", "s")).status.ok());
}

TEST(TenantQuotaTest, ConversationsPastTheLimitAreRefusedWithARetryDelay) {
  Keys keys({Key("k", "t", R"("salts": ["s", "s2"], "limits": {"max_conversations": 2})"),
             Key("other", "u", R"("salts": ["s"], "limits": {"max_conversations": 2})")});
  LedgerOptions lo;
  lo.tenant_conversation_limit = keys.conversation_limit();
  HarnessOptions o;
  o.ledger = NewMemoryLedger(lo);
  o.service.api_keys = keys.store();
  RouterHarness h(1, std::move(o));
  ASSERT_TRUE(h.CompleteAs("k", RouterHarness::UserTurn("c1", "hi", "s")).status.ok());
  ASSERT_TRUE(h.CompleteAs("k", RouterHarness::UserTurn("c2", "hi", "s2")).status.ok());
  TurnResult refused = h.CompleteAs("k", RouterHarness::UserTurn("c3", "hi", "s"));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.status.error_message().find("already has 2 conversations"), std::string::npos)
      << refused.status.error_message();
  EXPECT_EQ(RetryDelay(refused.status), absl::Minutes(1));
  // Existing conversations go on; other tenants are not counted.
  EXPECT_TRUE(h.CompleteAs("k", RouterHarness::UserTurn("c1", "more", "s")).status.ok());
  EXPECT_TRUE(h.CompleteAs("other", RouterHarness::UserTurn("c3", "hi", "s")).status.ok());
  // A delete frees a slot.
  ASSERT_TRUE(Delete(h, "k", "c2", "s2").ok());
  EXPECT_TRUE(h.CompleteAs("k", RouterHarness::UserTurn("c3", "hi", "s")).status.ok());
  EXPECT_EQ(h.Counter("hc_router_tenant_refusals_total", "reason", "conversations"), 1);
}

TEST(TenantQuotaTest, TokensPerMinutePastTheLimitAreRefusedUntilTheBucketRefills) {
  // Each turn: 3 raw prompt tokens + 2 generated = 5 tokens; 15 per minute
  // is three turns, and one token comes back every 4 s.
  Keys keys({Key("k", "t", R"("salts": ["s"], "limits": {"tokens_per_minute": 15})")});
  std::atomic<int64_t> now_ms{1'000'000};
  LocalQuotas quotas([&] { return absl::FromUnixMillis(now_ms.load()); });
  HarnessOptions o;
  o.service.api_keys = keys.store();
  o.service.quotas = &quotas;
  RouterHarness h(1, std::move(o));
  const auto turn = [](const std::string& id) {
    v1::CompleteRequest r;
    r.set_conversation_id(id);
    r.set_cache_salt("s");
    for (uint32_t t : {65u, 66u, 67u}) r.add_suffix_token_ids(t);
    r.mutable_sampling()->set_max_tokens(2);
    return r;
  };
  for (int i = 0; i < 3; ++i) {
    TurnResult r = h.CompleteAs("k", turn(absl::StrCat("c", i)));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    ASSERT_EQ(r.completed()->usage().prompt_tokens() + r.completed()->usage().completion_tokens(),
              5u);
  }
  TurnResult refused = h.CompleteAs("k", turn("c3"));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.status.error_message().find("15 tokens per minute; retry in 4s"),
            std::string::npos)
      << refused.status.error_message();
  EXPECT_EQ(RetryDelay(refused.status), absl::Seconds(4));
  now_ms += 3999;
  EXPECT_EQ(h.CompleteAs("k", turn("c3")).status.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  now_ms += 1;
  EXPECT_TRUE(h.CompleteAs("k", turn("c3")).status.ok());
  EXPECT_EQ(h.Counter("hc_router_tenant_refusals_total", "reason", "tokens_per_minute"), 2);
  EXPECT_EQ(h.Counter("hc_router_tenant_tokens_total", "tenant", "t"), 20);
}

}  // namespace
}  // namespace hc::router
