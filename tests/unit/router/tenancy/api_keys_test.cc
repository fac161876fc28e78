// The API keys file: parsing and its errors, authentication, salt rules and
// reloading (a bad new file keeps the old keys).
#include "router/tenancy/api_keys.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace hc::router {
namespace {

std::string Entry(const std::string& key, const std::string& tenant, const std::string& rest) {
  return absl::StrCat(R"({"sha256": ")", HashApiKey(key), R"(", "tenant": ")", tenant, "\"",
                      rest.empty() ? "" : ", ", rest, "}");
}
std::string File(const std::vector<std::string>& entries) {
  std::string out = R"({"keys": [)";
  for (size_t i = 0; i < entries.size(); ++i) absl::StrAppend(&out, i ? ", " : "", entries[i]);
  return out + "]}";
}

TEST(ApiKeysTest, HashIsTheHexSha256OfTheKey) {
  EXPECT_EQ(HashApiKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ApiKeysTest, FindsTheEntryOfAKeyAndNothingForOthers) {
  auto set = ApiKeySet::Parse(File(
      {Entry("key-a", "a", R"("salts": ["s"], "admin": true)"),
       Entry(
           "key-b", "b",
           R"("salt_prefix": "b-", "limits": {"max_concurrent_turns": 2, "max_conversations": 3, "tokens_per_minute": 4})")}));
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_NE((*set)->Find("key-a"), nullptr);
  EXPECT_EQ((*set)->Find("key-a")->tenant, "a");
  EXPECT_TRUE((*set)->Find("key-a")->admin);
  EXPECT_EQ((*set)->Find("key-b")->tenant, "b");
  EXPECT_EQ((*set)->Find("key-c"), nullptr);
  EXPECT_EQ((*set)->Find(""), nullptr);
  EXPECT_EQ((*set)->LimitsOf("b"), (TenantLimits{2, 3, 4}));
  EXPECT_EQ((*set)->LimitsOf("a"), TenantLimits{});
  EXPECT_EQ((*set)->tenants(), (std::vector<std::string>{"a", "b"}));
}

TEST(ApiKeysTest, MalformedFilesAreRefusedWithTheEntryAndField) {
  const struct {
    std::string json;
    std::string message;
  } cases[] = {
      {"[]", "exactly one field"},
      {R"({"keys": [], "extra": 1})", "exactly one field"},
      {File({R"({"sha256": "abc", "tenant": "a", "salts": ["s"]})"}), "keys[0]: sha256"},
      {File({Entry("k", "", R"("salts": ["s"])")}), "keys[0]: tenant"},
      {File({Entry("k", "a", "")}), "keys[0]: needs \"salts\""},
      {File({Entry("k", "a", R"("salts": ["s"], "admn": true)")}), "unknown field \"admn\""},
      {File({Entry("k", "a", R"("salts": ["s"], "limits": {"max_turns": 1})")}), "unknown limit"},
      {File({Entry("k", "a", R"("salts": ["s"], "limits": {"max_conversations": -1})")}),
       "limits.max_conversations"},
      {File({Entry("k", "a", R"("salts": ["s"])"), Entry("k", "b", R"("salts": ["s"])")}),
       "keys[1]: the same key hash as keys[0]"},
      {File({Entry("k1", "a", R"("salts": ["s"], "limits": {"max_conversations": 1})"),
             Entry("k2", "a", R"("salts": ["s"], "limits": {"max_conversations": 2})")}),
       "limits differ from keys[0]"},
      {"{\"keys\": [", "API keys file"},
  };
  for (const auto& c : cases) {
    auto set = ApiKeySet::Parse(c.json);
    ASSERT_FALSE(set.ok()) << c.json;
    EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(set.status().message().find(c.message), std::string::npos)
        << c.json << " -> " << set.status();
  }
}

TEST(ApiKeysTest, SaltRulesAllowListedSaltsAndThePrefixAndNameTheRuleWhenNot) {
  Caller c{.tenant = "a", .salts = {"x", "y"}, .salt_prefix = "p-"};
  EXPECT_TRUE(CheckSalt(c, "x").ok());
  EXPECT_TRUE(CheckSalt(c, "p-1").ok());
  absl::Status s = CheckSalt(c, "z");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("2 listed salts or salts starting with \"p-\""), std::string::npos)
      << s;
  EXPECT_EQ(s.message().find("\"x\""), std::string::npos) << "the rule, not the salts: " << s;
  EXPECT_TRUE(CheckSalt(Caller{.salt_prefix = ""}, "anything").ok());
  EXPECT_TRUE(CheckSalt(AnonymousCaller(), "anything").ok());
}

class ApiKeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hc-api-keys-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    path_ = dir_ + "/keys.json";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // Writes through a new file and a rename, as a deployment would.
  void Write(const std::string& text) {
    const std::string tmp = path_ + ".tmp";
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, path_);
  }
  std::string dir_, path_;
};

TEST_F(ApiKeyStoreTest, AuthenticatesBearerKeysOnly) {
  Write(File({Entry("secret", "a", R"("salts": ["s"])")}));
  auto store = ApiKeyStore::Open({.path = path_});
  ASSERT_TRUE(store.ok()) << store.status();
  auto caller = (*store)->Authenticate("Bearer secret");
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->tenant, "a");
  EXPECT_FALSE(caller->admin);
  EXPECT_TRUE((*store)->Authenticate("bearer  secret ").ok());
  for (std::optional<std::string_view> bad :
       {std::optional<std::string_view>(), std::optional<std::string_view>("secret"),
        std::optional<std::string_view>("Bearer "), std::optional<std::string_view>("Bearer wrong"),
        std::optional<std::string_view>("Basic secret")}) {
    auto r = (*store)->Authenticate(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(r.status().message(), "missing or invalid API key");
  }
}

TEST_F(ApiKeyStoreTest, OpenFailsOnAMissingOrBadFile) {
  EXPECT_FALSE(ApiKeyStore::Open({.path = path_}).ok());
  Write("{");
  EXPECT_EQ(ApiKeyStore::Open({.path = path_}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ApiKeyStoreTest, ReloadsAChangedFileAndKeepsTheOldKeysWhenTheNewFileIsBad) {
  Write(File({Entry("old", "a", R"("salts": ["s"])")}));
  auto store = ApiKeyStore::Open({.path = path_}).value();
  EXPECT_FALSE(store->ReloadIfChanged());  // unchanged
  Write(File({Entry("new", "b", R"("salts": ["s"])")}));
  EXPECT_TRUE(store->ReloadIfChanged());
  EXPECT_FALSE(store->Authenticate("Bearer old").ok());
  EXPECT_EQ(store->Authenticate("Bearer new")->tenant, "b");

  Write(File({Entry("newer", "c", "")}));  // invalid: no salt rule
  EXPECT_FALSE(store->ReloadIfChanged());
  EXPECT_EQ(store->Authenticate("Bearer new")->tenant, "b");
  EXPECT_EQ(store->Reload().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Authenticate("Bearer new")->tenant, "b");

  Write(File({Entry("newer", "c", R"("salts": ["s"])")}));  // fixed
  EXPECT_TRUE(store->ReloadIfChanged());
  EXPECT_EQ(store->Authenticate("Bearer newer")->tenant, "c");
}

TEST_F(ApiKeyStoreTest, TheWatcherReloadsOnARequestedReload) {
  Write(File({Entry("old", "a", R"("salts": ["s"])")}));
  auto store = ApiKeyStore::Open({.path = path_, .poll_interval = absl::Milliseconds(5)}).value();
  store->StartWatching();
  Write(File({Entry("new", "b", R"("salts": ["s"])")}));
  ApiKeyStore::RequestReloadFromSignal();
  // The watcher polls every 5 ms; wait for it with a generous bound.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (!store->Authenticate("Bearer new").ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_TRUE(store->Authenticate("Bearer new").ok());
}

}  // namespace
}  // namespace hc::router
