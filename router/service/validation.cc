#include "router/service/validation.h"

#include "absl/strings/str_cat.h"
#include "router/ledger/ledger.h"
#include "router/service/text_codec.h"

namespace hc::router {

absl::Status ValidateCompleteRequest(const hybridcache::v1::CompleteRequest& r,
                                     uint32_t vocab_size) {
  if (absl::Status s = ValidateConversationKey(r.conversation_id(), r.cache_salt()); !s.ok())
    return s;
  if (r.messages_size() > 0 && r.suffix_token_ids_size() > 0) {
    return absl::InvalidArgumentError("send either messages or suffix_token_ids, not both");
  }
  if (r.messages_size() == 0 && r.suffix_token_ids_size() == 0) {
    return absl::InvalidArgumentError("a turn needs messages or suffix_token_ids");
  }
  for (int i = 0; i < r.messages_size(); ++i) {
    const auto& m = r.messages(i);
    Role role;
    if (!ParseRole(m.role(), &role)) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "].role '", m.role().substr(0, 32),
                       "' is not one of system, user, assistant, tool"));
    }
    if (!IsValidUtf8(m.content())) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "].content is not valid UTF-8"));
    }
  }
  for (int i = 0; i < r.suffix_token_ids_size(); ++i) {
    if (r.suffix_token_ids(i) >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("suffix_token_ids[", i, "] = ", r.suffix_token_ids(i),
                       " is outside the vocabulary (size ", vocab_size, ")"));
    }
  }
  if (r.has_fork_from()) {
    const auto& f = r.fork_from();
    if (absl::Status s = ValidateConversationKey(f.conversation_id(), r.cache_salt()); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("fork_from: ", s.message()));
    }
    if (f.conversation_id() == r.conversation_id()) {
      return absl::InvalidArgumentError("fork_from names the conversation itself");
    }
    if (f.num_messages() == 0) {
      return absl::InvalidArgumentError("fork_from.num_messages must be at least 1");
    }
  }
  return ValidateSamplingParams(r.sampling(), vocab_size);
}

}  // namespace hc::router
