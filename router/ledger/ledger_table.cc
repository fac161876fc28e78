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
}  // namespace

absl::StatusOr<ConversationRecord> LedgerTable::AcquireLease(const std::string& key,
                                                             std::string_view holder,
                                                             absl::Time now, absl::Duration ttl) {
  Entry& e = entries_[key];
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
  Entry& e = entries_[key];
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
    entries_.erase(it);
  } else {
    it->second.lease = Lease{};
  }
}

absl::StatusOr<ConversationRecord> LedgerTable::Get(const std::string& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.round == 0) {
    return absl::NotFoundError("unknown conversation");
  }
  return ToRecord(it->second);
}

absl::Status LedgerTable::CheckDelete(const std::string& key, absl::Time now) const {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.round == 0) {
    return absl::NotFoundError("unknown conversation");
  }
  if (!it->second.lease.holder.empty() && it->second.lease.expiry > now) {
    return absl::AbortedError("a turn of this conversation is in flight");
  }
  return absl::OkStatus();
}

void LedgerTable::Erase(const std::string& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  if (it->second.round > 0) --committed_;
  entries_.erase(it);
}

void LedgerTable::Put(const std::string& key, Entry entry) {
  auto it = entries_.find(key);
  if (it != entries_.end() && it->second.round > 0) --committed_;
  if (entry.round > 0) ++committed_;
  entries_[key] = std::move(entry);
}

}  // namespace hc::router
