#include "router/tenancy/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/logging.h"
#include "common/request_checks.h"

namespace hc::router {
namespace {

// This absl's string_view is its own type, not std::string_view.
absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::atomic<uint64_t> g_reload_requests{0};
static_assert(std::atomic<uint64_t>::is_always_lock_free, "used from a signal handler");

std::array<uint8_t, 32> Sha256(std::string_view data) {
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  HC_CHECK(EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) == 1 &&
           len == out.size())
      << "SHA-256 failed";
  return out;
}

uint64_t Prefix(const std::array<uint8_t, 32>& hash) {
  uint64_t v = 0;
  std::memcpy(&v, hash.data(), sizeof(v));
  return v;
}

absl::Status Bad(size_t index, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("API keys file: keys[", index, "]: ", what));
}

// A non-negative integer field of `limits`, 0 when absent.
absl::Status ReadLimit(const json::Value& limits, size_t index, const char* name, uint64_t* out) {
  const json::Value* v = limits.Find(name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_int() || v->AsInt64() < 0) {
    return Bad(index, absl::StrCat("limits.", name, " must be a non-negative integer"));
  }
  *out = static_cast<uint64_t>(v->AsInt64());
  return absl::OkStatus();
}

absl::StatusOr<ApiKeyEntry> ParseEntry(const json::Value& e, size_t i) {
  if (!e.is_object()) return Bad(i, "must be an object");
  for (const auto& [name, value] : e.AsObject()) {
    if (name != "sha256" && name != "tenant" && name != "salts" && name != "salt_prefix" &&
        name != "admin" && name != "limits") {
      return Bad(i, absl::StrCat("unknown field \"", name, "\""));
    }
  }
  ApiKeyEntry out;
  const json::Value* hash = e.Find("sha256");
  std::string bytes;
  if (hash == nullptr || !hash->is_string() || hash->AsString().size() != 64 ||
      !absl::c_all_of(hash->AsString(), [](char c) { return absl::ascii_isxdigit(c); })) {
    return Bad(i, "sha256 must be 64 hex digits (the SHA-256 of the key: hcctl hash-key KEY)");
  }
  bytes = absl::HexStringToBytes(absl::AsciiStrToLower(hash->AsString()));
  std::memcpy(out.sha256.data(), bytes.data(), out.sha256.size());
  const json::Value* tenant = e.Find("tenant");
  if (tenant == nullptr || !tenant->is_string() || tenant->AsString().empty() ||
      tenant->AsString().size() > kMaxTenantBytes) {
    return Bad(i, "tenant must be a non-empty string of at most 128 bytes");
  }
  out.tenant = tenant->AsString();
  if (const json::Value* salts = e.Find("salts"); salts != nullptr) {
    if (!salts->is_array()) return Bad(i, "salts must be an array of strings");
    for (const json::Value& s : salts->AsArray()) {
      if (!s.is_string()) return Bad(i, "salts must be an array of strings");
      out.salts.push_back(s.AsString());
    }
  }
  if (const json::Value* prefix = e.Find("salt_prefix"); prefix != nullptr) {
    if (!prefix->is_string()) return Bad(i, "salt_prefix must be a string");
    out.salt_prefix = prefix->AsString();
  }
  if (out.salts.empty() && !out.salt_prefix.has_value()) {
    return Bad(i,
               "needs \"salts\" and/or \"salt_prefix\" (\"salt_prefix\": \"\" allows every salt)");
  }
  if (const json::Value* admin = e.Find("admin"); admin != nullptr) {
    if (!admin->is_bool()) return Bad(i, "admin must be true or false");
    out.admin = admin->AsBool();
  }
  if (const json::Value* limits = e.Find("limits"); limits != nullptr) {
    if (!limits->is_object()) return Bad(i, "limits must be an object");
    for (const auto& [name, value] : limits->AsObject()) {
      if (name != "max_concurrent_turns" && name != "max_conversations" &&
          name != "tokens_per_minute") {
        return Bad(i, absl::StrCat("unknown limit \"", name, "\""));
      }
    }
    if (absl::Status s =
            ReadLimit(*limits, i, "max_concurrent_turns", &out.limits.max_concurrent_turns);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = ReadLimit(*limits, i, "max_conversations", &out.limits.max_conversations);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = ReadLimit(*limits, i, "tokens_per_minute", &out.limits.tokens_per_minute);
        !s.ok()) {
      return s;
    }
  }
  return out;
}

}  // namespace

std::string HashApiKey(std::string_view key) {
  const std::array<uint8_t, 32> h = Sha256(key);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(h.data()), h.size()));
}

Caller AnonymousCaller() { return Caller{.tenant = "", .admin = true, .any_salt = true}; }

absl::Status CheckSalt(const Caller& caller, std::string_view salt) {
  if (caller.any_salt) return absl::OkStatus();
  if (caller.salt_prefix.has_value() && absl::StartsWith(AV(salt), *caller.salt_prefix)) {
    return absl::OkStatus();
  }
  for (const std::string& s : caller.salts) {
    if (s == salt) return absl::OkStatus();
  }
  std::string rule;
  if (!caller.salts.empty()) {
    rule = absl::StrCat(caller.salts.size(), " listed salt", caller.salts.size() == 1 ? "" : "s");
  }
  if (caller.salt_prefix.has_value()) {
    absl::StrAppend(&rule, rule.empty() ? "" : " or ", "salts starting with \"",
                    absl::CEscape(*caller.salt_prefix), "\"");
  }
  return absl::PermissionDeniedError(absl::StrCat("this API key may not use cache_salt \"",
                                                  absl::CEscape(AV(salt)), "\": it allows ", rule));
}

absl::StatusOr<std::shared_ptr<const ApiKeySet>> ApiKeySet::Parse(std::string_view text) {
  absl::StatusOr<json::Value> doc = json::Parse(text);
  if (!doc.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("API keys file: ", doc.status().message()));
  }
  const json::Value* keys = doc->is_object() ? doc->Find("keys") : nullptr;
  if (keys == nullptr || !keys->is_array() || doc->AsObject().size() != 1) {
    return absl::InvalidArgumentError(
        "API keys file: must be an object with exactly one field, \"keys\": an array");
  }
  auto set = std::make_shared<ApiKeySet>();
  absl::flat_hash_map<std::string, size_t> first_of_tenant;
  for (size_t i = 0; i < keys->AsArray().size(); ++i) {
    absl::StatusOr<ApiKeyEntry> e = ParseEntry(keys->AsArray()[i], i);
    if (!e.ok()) return e.status();
    if (auto same = set->by_prefix_.find(Prefix(e->sha256)); same != set->by_prefix_.end()) {
      for (size_t j : same->second) {
        if (set->entries_[j].sha256 == e->sha256) {
          return Bad(i, absl::StrCat("the same key hash as keys[", j, "]"));
        }
      }
    }
    auto [it, inserted] = first_of_tenant.try_emplace(e->tenant, i);
    if (!inserted && set->limits_[e->tenant] != e->limits) {
      return Bad(i, absl::StrCat("limits differ from keys[", it->second, "] of the same tenant \"",
                                 e->tenant, "\" (limits are per tenant)"));
    }
    set->limits_[e->tenant] = e->limits;
    set->by_prefix_[Prefix(e->sha256)].push_back(set->entries_.size());
    set->entries_.push_back(*std::move(e));
  }
  return std::shared_ptr<const ApiKeySet>(std::move(set));
}

const ApiKeyEntry* ApiKeySet::Find(std::string_view key) const {
  const std::array<uint8_t, 32> h = Sha256(key);
  auto it = by_prefix_.find(Prefix(h));
  if (it == by_prefix_.end()) return nullptr;
  const ApiKeyEntry* match = nullptr;
  for (size_t i : it->second) {
    if (CRYPTO_memcmp(entries_[i].sha256.data(), h.data(), h.size()) == 0) match = &entries_[i];
  }
  return match;
}

TenantLimits ApiKeySet::LimitsOf(std::string_view tenant) const {
  auto it = limits_.find(AV(tenant));
  return it == limits_.end() ? TenantLimits{} : it->second;
}

std::vector<std::string> ApiKeySet::tenants() const {
  std::vector<std::string> out;
  for (const auto& [tenant, limits] : limits_) out.push_back(tenant);
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::unique_ptr<ApiKeyStore>> ApiKeyStore::Open(ApiKeyStoreOptions options) {
  std::unique_ptr<ApiKeyStore> store(new ApiKeyStore(std::move(options)));
  if (absl::Status s = store->Reload(); !s.ok()) return s;
  return store;
}

ApiKeyStore::~ApiKeyStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (watcher_.joinable()) watcher_.join();
}

std::shared_ptr<const ApiKeySet> ApiKeyStore::current() const {
  absl::MutexLock lock(&mu_);
  return keys_;
}

absl::StatusOr<Caller> ApiKeyStore::Authenticate(
    std::optional<std::string_view> authorization) const {
  const absl::Status unauthenticated = absl::UnauthenticatedError("missing or invalid API key");
  if (!authorization.has_value()) return unauthenticated;
  absl::string_view v = absl::StripAsciiWhitespace(AV(*authorization));
  constexpr absl::string_view kScheme = "bearer ";
  if (v.size() <= kScheme.size() || !absl::EqualsIgnoreCase(v.substr(0, kScheme.size()), kScheme)) {
    return unauthenticated;
  }
  v = absl::StripLeadingAsciiWhitespace(v.substr(kScheme.size()));
  std::shared_ptr<const ApiKeySet> keys = current();
  const ApiKeyEntry* e = keys->Find(std::string_view(v.data(), v.size()));
  if (e == nullptr) return unauthenticated;
  return Caller{.tenant = e->tenant,
                .admin = e->admin,
                .limits = keys->LimitsOf(e->tenant),
                .salts = e->salts,
                .salt_prefix = e->salt_prefix};
}

absl::StatusOr<ApiKeyStore::FileId> ApiKeyStore::Stat() const {
  struct stat st {};
  if (::stat(options_.path.c_str(), &st) != 0) {
    return absl::NotFoundError(
        absl::StrCat("API keys file ", options_.path, ": ", std::strerror(errno)));
  }
  return FileId{st.st_dev, st.st_ino, st.st_size,
                static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

absl::Status ApiKeyStore::Reload() {
  // The identity is taken before reading: a write racing the read changes it
  // again, so the next poll reloads.
  absl::StatusOr<FileId> id = Stat();
  absl::StatusOr<std::string> text = id.ok() ? ReadFileToString(options_.path) : id.status();
  absl::StatusOr<std::shared_ptr<const ApiKeySet>> set =
      text.ok() ? ApiKeySet::Parse(*text)
                : absl::StatusOr<std::shared_ptr<const ApiKeySet>>(text.status());
  absl::MutexLock lock(&mu_);
  if (id.ok()) loaded_ = *id;
  if (!set.ok()) return set.status();
  keys_ = *std::move(set);
  return absl::OkStatus();
}

bool ApiKeyStore::ReloadIfChanged() {
  absl::StatusOr<FileId> id = Stat();
  {
    absl::MutexLock lock(&mu_);
    if (!id.ok() || (loaded_.has_value() && *loaded_ == *id)) return false;
  }
  if (absl::Status s = Reload(); !s.ok()) {
    HC_LOG(ERROR) << "API keys file changed but cannot be loaded; the previous keys stay in force: "
                  << s;
    return false;
  }
  HC_LOG(INFO) << "API keys reloaded from " << options_.path << ": " << current()->size()
               << " keys";
  return true;
}

void ApiKeyStore::RequestReloadFromSignal() {
  g_reload_requests.fetch_add(1, std::memory_order_relaxed);
}

void ApiKeyStore::StartWatching() {
  watcher_ = std::thread([this] {
    uint64_t seen = g_reload_requests.load(std::memory_order_relaxed);
    absl::MutexLock lock(&mu_);
    while (!mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.poll_interval)) {
      mu_.Unlock();
      const uint64_t requests = g_reload_requests.load(std::memory_order_relaxed);
      if (requests != seen) {
        seen = requests;
        if (absl::Status s = Reload(); !s.ok()) {
          HC_LOG(ERROR) << "API keys reload (SIGHUP) failed; the previous keys stay in force: "
                        << s;
        } else {
          HC_LOG(INFO) << "API keys reloaded (SIGHUP): " << current()->size() << " keys";
        }
      } else {
        ReloadIfChanged();
      }
      mu_.Lock();
    }
  });
}

}  // namespace hc::router
