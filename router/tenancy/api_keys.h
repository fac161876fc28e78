// API keys bound to tenants (--api_keys_file). Without a keys file the router
// authenticates nobody and every caller is the empty tenant with admin rights
// (the behaviour before keys existed).
//
// The file is JSON; keys are stored as the lowercase hex SHA-256 of the key
// (`hcctl hash-key KEY` prints it), never in clear:
//
//   {"keys": [
//     {"sha256": "<64 hex digits>",
//      "tenant": "acme",                  // required, non-empty
//      "salts": ["support", "sales"],     // cache_salts allowed exactly, and/or
//      "salt_prefix": "acme-",            // any salt starting with this ("": all)
//      "admin": false,                    // GetConversation shows worker ids
//      "limits": {"max_concurrent_turns": 8, "max_conversations": 10000,
//                 "tokens_per_minute": 200000}}]}   // each optional, 0: none
//
// A key needs at least one salt rule. Limits belong to the tenant, so every
// key of one tenant must state the same limits. Unknown fields are errors (a
// typo must not silently drop a limit).
//
// Thread-safety: ApiKeySet is immutable; ApiKeyStore is thread-safe.
#ifndef HC_ROUTER_TENANCY_API_KEYS_H_
#define HC_ROUTER_TENANCY_API_KEYS_H_

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace hc::router {

// A tenant's quotas; 0 means unlimited.
struct TenantLimits {
  uint64_t max_concurrent_turns = 0;
  uint64_t max_conversations = 0;
  uint64_t tokens_per_minute = 0;
  bool operator==(const TenantLimits&) const = default;
};

// Lowercase hex SHA-256 of `key` (what the keys file stores).
std::string HashApiKey(std::string_view key);

struct ApiKeyEntry {
  std::array<uint8_t, 32> sha256{};
  std::string tenant;
  std::vector<std::string> salts;
  std::optional<std::string> salt_prefix;
  bool admin = false;
  TenantLimits limits;
};

// Who is calling: the matched key's tenant and rights.
struct Caller {
  std::string tenant;
  bool admin = false;
  TenantLimits limits;
  // The key's salt rules (empty salts and no prefix without a keys file:
  // then every salt is allowed).
  std::vector<std::string> salts;
  std::optional<std::string> salt_prefix;
  bool any_salt = false;
};

// The anonymous caller of a router without keys: tenant "", admin, any salt.
Caller AnonymousCaller();

// PERMISSION_DENIED, naming the key's salt rule, unless `salt` is allowed.
absl::Status CheckSalt(const Caller& caller, std::string_view salt);

class ApiKeySet {
 public:
  // INVALID_ARGUMENT naming the entry and field for anything malformed.
  static absl::StatusOr<std::shared_ptr<const ApiKeySet>> Parse(std::string_view json);

  // The entry whose hash matches the presented key, or null. The entries are
  // indexed by the first 8 bytes of their hash and each candidate's full hash
  // is compared in constant time (CRYPTO_memcmp), so a lookup costs one
  // SHA-256 whatever the number of keys (a linear constant-time scan took
  // 170 us per call with 10000 keys: tests/bench/router/api_keys_bench.cc).
  // What timing can reveal is whether some stored hash shares its first 8
  // bytes with SHA-256(presented key), which an attacker cannot steer.
  const ApiKeyEntry* Find(std::string_view key) const;
  // The tenant's limits (all zero for an unknown tenant).
  TenantLimits LimitsOf(std::string_view tenant) const;
  std::vector<std::string> tenants() const;
  size_t size() const { return entries_.size(); }

 private:
  std::vector<ApiKeyEntry> entries_;
  // Entry indexes by the first 8 bytes of their hash.
  absl::flat_hash_map<uint64_t, std::vector<size_t>> by_prefix_;
  absl::flat_hash_map<std::string, TenantLimits> limits_;
};

struct ApiKeyStoreOptions {
  std::string path;
  // How often the watcher looks for a changed file or a requested reload.
  absl::Duration poll_interval = absl::Milliseconds(500);
};

// The keys file, reloaded when it changes (size, mtime or inode) or when a
// reload is requested (SIGHUP). A file that fails to load keeps the keys in
// force and logs why.
class ApiKeyStore {
 public:
  // Loads the file; its error when it cannot (the router then refuses to start).
  static absl::StatusOr<std::unique_ptr<ApiKeyStore>> Open(ApiKeyStoreOptions options);
  ~ApiKeyStore();

  std::shared_ptr<const ApiKeySet> current() const;

  // The caller that `authorization` metadata ("Bearer <key>") names;
  // UNAUTHENTICATED "missing or invalid API key" otherwise (also when absent).
  absl::StatusOr<Caller> Authenticate(std::optional<std::string_view> authorization) const;
  TenantLimits LimitsOf(std::string_view tenant) const { return current()->LimitsOf(tenant); }

  // Reads and parses the file now; on error keeps the current keys and
  // returns the error.
  absl::Status Reload();
  // Reloads when the file's identity changed since the last load (an error is
  // logged and the file is not retried until it changes again). Returns
  // whether a new set took effect.
  bool ReloadIfChanged();
  // Starts the watcher thread: every poll_interval, reloads when requested or
  // when the file changed.
  void StartWatching();

  // Async-signal-safe (a lock-free atomic store): makes every watching store
  // reload at its next poll. hc-router calls it from its SIGHUP handler.
  static void RequestReloadFromSignal();

 private:
  struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileId&) const = default;
  };
  explicit ApiKeyStore(ApiKeyStoreOptions options) : options_(std::move(options)) {}
  absl::StatusOr<FileId> Stat() const;

  const ApiKeyStoreOptions options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const ApiKeySet> keys_ ABSL_GUARDED_BY(mu_);
  std::optional<FileId> loaded_ ABSL_GUARDED_BY(mu_);  // the file last tried
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread watcher_;
};

}  // namespace hc::router

#endif  // HC_ROUTER_TENANCY_API_KEYS_H_
