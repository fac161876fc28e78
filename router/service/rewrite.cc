#include "router/service/rewrite.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hc::router {

absl::StatusOr<uint32_t> ApplyRewrite(ConversationRecord& record,
                                      std::vector<TurnMessage>& messages, EncodedTurn& enc) {
  const size_t num_history = record.messages.size();
  if (!enc.rewrite || enc.message_begins.size() != num_history + messages.size() ||
      enc.message_ends.size() != enc.message_begins.size()) {
    return absl::InternalError(absl::StrCat(
        "the text codec's rewrite encoding has ", enc.message_begins.size(), " message ranges for ",
        num_history, " committed and ", messages.size(), " new messages"));
  }
  // The tokens the rendering shares with the committed ones; at least one
  // rendered token is always left to compute.
  const size_t limit =
      std::min(record.tokens.size(), enc.tokens.empty() ? 0 : enc.tokens.size() - 1);
  size_t shared = 0;
  while (shared < limit && record.tokens[shared] == enc.tokens[shared]) ++shared;
  // Back to the last committed message boundary within it.
  uint32_t kept = 0;
  for (const LedgerMessage& m : record.messages) {
    if (m.begin <= shared) kept = std::max(kept, m.begin);
    if (m.end <= shared) kept = std::max(kept, m.end);
  }
  size_t kept_messages = 0;
  while (kept_messages < num_history && record.messages[kept_messages].end <= kept) {
    ++kept_messages;
  }

  std::vector<TurnMessage> turn_messages;
  turn_messages.reserve(num_history - kept_messages + messages.size());
  for (size_t i = kept_messages; i < num_history; ++i) {
    turn_messages.push_back(TurnMessage{record.messages[i].role, record.messages[i].text});
  }
  for (TurnMessage& m : messages) turn_messages.push_back(std::move(m));
  messages = std::move(turn_messages);

  EncodedTurn suffix;
  suffix.tokens.assign(enc.tokens.begin() + kept, enc.tokens.end());
  for (size_t i = kept_messages; i < enc.message_begins.size(); ++i) {
    suffix.message_begins.push_back(std::max(enc.message_begins[i], kept) - kept);
    suffix.message_ends.push_back(std::max(enc.message_ends[i], kept) - kept);
  }
  enc = std::move(suffix);

  record.tokens.resize(kept);
  record.messages.resize(kept_messages);
  return kept;
}

}  // namespace hc::router
