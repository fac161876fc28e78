#include "router/ledger/ledger_table.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/retry_delay.h"

namespace hc::router {

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kSystem:
      return "system";
    case Role::kUser:
      return "user";
    case Role::kAssistant:
      return "assistant";
    case Role::kTool:
      return "tool";
  }
  return "user";
}

bool ParseRole(std::string_view name, Role* role) {
  for (int i = 0; i < kNumRoles; ++i) {
    if (RoleName(static_cast<Role>(i)) == name) {
      *role = static_cast<Role>(i);
      return true;
    }
  }
  return false;
}

std::optional<RoundUsage> UsageOfRound(const ConversationRecord& record, uint64_t round) {
  if (round == 0 || round > record.round || round > record.usage.size()) return std::nullopt;
  return record.usage[round - 1];
}

bool ParseFsyncPolicy(std::string_view name, FsyncPolicy* policy) {
  if (name == "always")
    *policy = FsyncPolicy::kAlways;
  else if (name == "interval")
    *policy = FsyncPolicy::kInterval;
  else if (name == "never")
    *policy = FsyncPolicy::kNever;
  else
    return false;
  return true;
}

namespace {
constexpr uint32_t kTenantBit = 0x80000000u;

uint32_t ReadU32(std::string_view s, size_t at) {
  uint32_t v = 0;
  std::memcpy(&v, s.data() + at, 4);
  return v;
}

// The parts of an encoded key: salt at [4, 4 + salt_len); with a tenant,
// tenant at [tenant_at, id_at); the id from id_at.
struct KeyParts {
  uint32_t salt_len = 0;
  size_t tenant_at = 0;
  size_t id_at = 0;
};

KeyParts PartsOf(std::string_view key) {
  KeyParts p;
  const uint32_t word = ReadU32(key, 0);
  p.salt_len = word & ~kTenantBit;
  p.tenant_at = 4 + p.salt_len;
  p.id_at = p.tenant_at;
  if ((word & kTenantBit) != 0) {
    p.tenant_at += 4;
    p.id_at = p.tenant_at + ReadU32(key, 4 + p.salt_len);
  }
  return p;
}
}  // namespace

std::string EncodeTableKey(const LedgerKey& key) {
  const uint32_t n = static_cast<uint32_t>(key.cache_salt.size());
  std::string out;
  out.reserve(8 + key.cache_salt.size() + key.tenant.size() + key.conversation_id.size());
  const uint32_t word = key.tenant.empty() ? n : (n | kTenantBit);
  out.append(reinterpret_cast<const char*>(&word), 4);
  out.append(key.cache_salt);
  if (!key.tenant.empty()) {
    const uint32_t t = static_cast<uint32_t>(key.tenant.size());
    out.append(reinterpret_cast<const char*>(&t), 4);
    out.append(key.tenant);
  }
  out.append(key.conversation_id);
  return out;
}

LedgerKey DecodeTableKey(std::string_view encoded) {
  const KeyParts p = PartsOf(encoded);
  return LedgerKey{std::string(encoded.substr(4, p.salt_len)), std::string(encoded.substr(p.id_at)),
                   std::string(encoded.substr(p.tenant_at, p.id_at - p.tenant_at))};
}

absl::Status TenantCapRefused(uint64_t live, uint64_t limit) {
  return WithRetryDelay(
      absl::ResourceExhaustedError(absl::StrCat(
          "this API key's tenant already has ", live, " conversations, its limit (", limit,
          ", max_conversations in the API keys file); delete one or let idle ones "
          "expire, retry in ",
          absl::FormatDuration(kTenantCapRetryDelay))),
      kTenantCapRetryDelay);
}

namespace {
ConversationRecord ToRecord(const LedgerTable::Entry& e) {
  return ConversationRecord{.round = e.round,
                            .tokens = e.tokens,
                            .messages = e.messages,
                            .worker = e.worker,
                            .lease = e.lease,
                            .last_activity = e.last_activity,
                            .usage = e.usage};
}
// absl::string_view: the count maps' heterogeneous lookup type. The salt's
// namespace is everything before the id (its tenant included).
absl::string_view SaltOf(const std::string& table_key) {
  return absl::string_view(table_key).substr(0, PartsOf(table_key).id_at);
}
absl::string_view TenantOf(const std::string& table_key) {
  const KeyParts p = PartsOf(table_key);
  return absl::string_view(table_key).substr(p.tenant_at, p.id_at - p.tenant_at);
}
}  // namespace

LedgerTable::Entry& LedgerTable::Insert(const std::string& key) {
  auto [it, inserted] = entries_.try_emplace(key);
  if (inserted) {
    ++per_salt_[SaltOf(key)];
    if (absl::string_view t = TenantOf(key); !t.empty()) ++per_tenant_[t];
  }
  return it->second;
}

void LedgerTable::Remove(absl::flat_hash_map<std::string, Entry>::iterator it) {
  if (it->second.round > 0) --committed_;
  auto salt = per_salt_.find(SaltOf(it->first));
  if (--salt->second == 0) per_salt_.erase(salt);
  if (absl::string_view t = TenantOf(it->first); !t.empty()) {
    auto tenant = per_tenant_.find(t);
    if (--tenant->second == 0) per_tenant_.erase(tenant);
  }
  entries_.erase(it);
}

bool LedgerTable::ExpiredEntry(const Entry& e, absl::Time now) const {
  return limits_.conversation_ttl > absl::ZeroDuration() && e.round > 0 &&
         (e.lease.holder.empty() || e.lease.expiry <= now) &&
         e.last_activity + limits_.conversation_ttl <= now;
}

bool LedgerTable::Expired(const std::string& key, absl::Time now) const {
  auto it = entries_.find(key);
  return it != entries_.end() && ExpiredEntry(it->second, now);
}

void LedgerTable::Expire(const std::string& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  ++expired_;
  Remove(it);
}

LedgerTable::SweepResult LedgerTable::Sweep(absl::Time now, int max_entries) {
  SweepResult out;
  auto it = sweep_cursor_.empty() ? entries_.end() : entries_.find(sweep_cursor_);
  if (it == entries_.end()) it = entries_.begin();
  for (int n = 0; n < max_entries && it != entries_.end(); ++n, ++it) {
    const Entry& e = it->second;
    if (ExpiredEntry(e, now)) {
      out.expired.push_back(it->first);
    } else if (e.round == 0 && e.lease.expiry <= now) {
      out.stale.push_back(it->first);
    }
  }
  sweep_cursor_ = it == entries_.end() ? std::string() : it->first;
  return out;
}

absl::StatusOr<ConversationRecord> LedgerTable::AcquireLease(const std::string& key,
                                                             std::string_view holder,
                                                             absl::Time now, absl::Duration ttl) {
  if (limits_.max_conversations_per_salt > 0 && !entries_.contains(key)) {
    auto salt = per_salt_.find(SaltOf(key));
    if (salt != per_salt_.end() && salt->second >= limits_.max_conversations_per_salt) {
      ++refused_;
      return absl::ResourceExhaustedError(absl::StrCat(
          "this cache_salt already has ", salt->second,
          " conversations, the most one salt may have (--max_conversations_per_salt=",
          limits_.max_conversations_per_salt, "); delete one or let idle ones expire"));
    }
  }
  if (limits_.tenant_conversation_limit && !entries_.contains(key)) {
    if (absl::string_view t = TenantOf(key); !t.empty()) {
      const uint64_t limit =
          limits_.tenant_conversation_limit(std::string_view(t.data(), t.size()));
      auto tenant = per_tenant_.find(t);
      if (limit > 0 && tenant != per_tenant_.end() && tenant->second >= limit) {
        return TenantCapRefused(tenant->second, limit);
      }
    }
  }
  Entry& e = Insert(key);
  if (!e.lease.holder.empty() && e.lease.holder != holder && e.lease.expiry > now) {
    return absl::AbortedError("a turn of this conversation is already in flight");
  }
  e.lease.holder = std::string(holder);
  e.lease.expiry = now + ttl;
  return ToRecord(e);
}

absl::Status LedgerTable::RenewLease(const std::string& key, std::string_view holder,
                                     absl::Time now, absl::Duration ttl) {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.lease.holder != holder) {
    return absl::AbortedError("the turn's lease expired and was taken over");
  }
  it->second.lease.expiry = now + ttl;
  return absl::OkStatus();
}

void TruncateForRewrite(uint32_t from, std::vector<uint32_t>& tokens,
                        std::vector<LedgerMessage>& messages) {
  if (from < tokens.size()) tokens.resize(from);
  // Messages are in ledger order, so those ending after `from` are a suffix.
  size_t keep = 0;
  while (keep < messages.size() && messages[keep].end <= from) ++keep;
  messages.resize(keep);
}

void RecordRoundUsage(uint64_t round, const std::optional<RoundUsage>& round_usage,
                      std::vector<std::optional<RoundUsage>>& usage) {
  if (!round_usage.has_value() && usage.empty()) return;
  usage.resize(round);  // pads the earlier rounds committed without one
  usage.push_back(round_usage);
}

absl::Status LedgerTable::CheckCommit(const std::string& key, std::string_view holder,
                                      const CommitRequest& commit) const {
  auto it = entries_.find(key);
  if (!holder.empty() && (it == entries_.end() || it->second.lease.holder != holder)) {
    return absl::AbortedError("the turn's lease expired and was taken over");
  }
  const uint64_t round = it == entries_.end() ? 0 : it->second.round;
  if (round != commit.expected_round) {
    return absl::FailedPreconditionError(
        absl::StrCat("committed round is ", round, ", expected ", commit.expected_round));
  }
  const size_t committed = it == entries_.end() ? 0 : it->second.tokens.size();
  if (commit.rewrite_from.has_value() && *commit.rewrite_from > committed) {
    return absl::InvalidArgumentError(absl::StrCat("a rewrite from token ", *commit.rewrite_from,
                                                   " is past the conversation's ", committed,
                                                   " committed tokens"));
  }
  return absl::OkStatus();
}

absl::Status LedgerTable::Commit(const std::string& key, std::string_view holder,
                                 const CommitRequest& commit, absl::Time now) {
  if (absl::Status s = CheckCommit(key, holder, commit); !s.ok()) return s;
  Entry& e = Insert(key);
  if (e.round == 0) ++committed_;
  e.round = commit.expected_round + 1;
  if (commit.rewrite_from.has_value())
    TruncateForRewrite(*commit.rewrite_from, e.tokens, e.messages);
  // Exact capacity: ledgers hold many conversations, doubling would waste up
  // to half of the token memory.
  e.tokens.reserve(e.tokens.size() + commit.appended_tokens.size());
  e.tokens.insert(e.tokens.end(), commit.appended_tokens.begin(), commit.appended_tokens.end());
  e.messages.reserve(e.messages.size() + commit.appended_messages.size());
  e.messages.insert(e.messages.end(), commit.appended_messages.begin(),
                    commit.appended_messages.end());
  RecordRoundUsage(commit.expected_round, commit.usage, e.usage);
  e.worker = commit.worker;
  e.lease = Lease{};
  e.last_activity = now;
  return absl::OkStatus();
}

void LedgerTable::ReleaseLease(const std::string& key, std::string_view holder) {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.lease.holder != holder) return;
  if (it->second.round == 0) {
    Remove(it);
  } else {
    it->second.lease = Lease{};
  }
}

absl::StatusOr<ConversationRecord> LedgerTable::Get(const std::string& key, absl::Time now) const {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.round == 0 || ExpiredEntry(it->second, now)) {
    return absl::NotFoundError("unknown conversation");
  }
  return ToRecord(it->second);
}

absl::Status LedgerTable::CheckDelete(const std::string& key, absl::Time now) const {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.round == 0 || ExpiredEntry(it->second, now)) {
    return absl::NotFoundError("unknown conversation");
  }
  if (!it->second.lease.holder.empty() && it->second.lease.expiry > now) {
    return absl::AbortedError("a turn of this conversation is in flight");
  }
  return absl::OkStatus();
}

void LedgerTable::Erase(const std::string& key) {
  auto it = entries_.find(key);
  if (it != entries_.end()) Remove(it);
}

void LedgerTable::Put(const std::string& key, Entry entry) {
  Entry& e = Insert(key);
  if (e.round > 0) --committed_;
  if (entry.round > 0) ++committed_;
  e = std::move(entry);
}

}  // namespace hc::router
