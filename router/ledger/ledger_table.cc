#include "router/ledger/ledger_table.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace hc::router {

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kSystem: return "system";
    case Role::kUser: return "user";
    case Role::kAssistant: return "assistant";
    case Role::kTool: return "tool";
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

bool ParseFsyncPolicy(std::string_view name, FsyncPolicy* policy) {
  if (name == "always") *policy = FsyncPolicy::kAlways;
  else if (name == "interval") *policy = FsyncPolicy::kInterval;
  else if (name == "never") *policy = FsyncPolicy::kNever;
  else return false;
  return true;
}

std::string EncodeTableKey(const LedgerKey& key) {
  std::string out(4 + key.cache_salt.size() + key.conversation_id.size(), '\0');
  const uint32_t n = static_cast<uint32_t>(key.cache_salt.size());
  std::memcpy(out.data(), &n, 4);
  std::memcpy(out.data() + 4, key.cache_salt.data(), key.cache_salt.size());
  std::memcpy(out.data() + 4 + n, key.conversation_id.data(), key.conversation_id.size());
  return out;
}

LedgerKey DecodeTableKey(std::string_view encoded) {
  uint32_t n = 0;
  std::memcpy(&n, encoded.data(), 4);
  return LedgerKey{std::string(encoded.substr(4, n)), std::string(encoded.substr(4 + n))};
}

namespace {
ConversationRecord ToRecord(const LedgerTable::Entry& e) {
  return ConversationRecord{e.round, e.tokens, e.messages, e.worker, e.lease, e.last_activity};
}
// absl::string_view: the per-salt map's heterogeneous lookup type.
absl::string_view SaltOf(const std::string& table_key) {
  uint32_t n = 0;
  std::memcpy(&n, table_key.data(), 4);
  return absl::string_view(table_key).substr(4, n);
}
}  // namespace

LedgerTable::Entry& LedgerTable::Insert(const std::string& key) {
  auto [it, inserted] = entries_.try_emplace(key);
  if (inserted) ++per_salt_[SaltOf(key)];
  return it->second;
}

void LedgerTable::Remove(absl::flat_hash_map<std::string, Entry>::iterator it) {
  if (it->second.round > 0) --committed_;
  auto salt = per_salt_.find(SaltOf(it->first));
  if (--salt->second == 0) per_salt_.erase(salt);
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
  return absl::OkStatus();
}

absl::Status LedgerTable::Commit(const std::string& key, std::string_view holder,
                                 const CommitRequest& commit, absl::Time now) {
  if (absl::Status s = CheckCommit(key, holder, commit); !s.ok()) return s;
  Entry& e = Insert(key);
  if (e.round == 0) ++committed_;
  e.round = commit.expected_round + 1;
  // Exact capacity: ledgers hold many conversations, doubling would waste up
  // to half of the token memory.
  e.tokens.reserve(e.tokens.size() + commit.appended_tokens.size());
  e.tokens.insert(e.tokens.end(), commit.appended_tokens.begin(), commit.appended_tokens.end());
  e.messages.reserve(e.messages.size() + commit.appended_messages.size());
  e.messages.insert(e.messages.end(), commit.appended_messages.begin(),
                    commit.appended_messages.end());
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

absl::StatusOr<ConversationRecord> LedgerTable::Get(const std::string& key,
                                                    absl::Time now) const {
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
