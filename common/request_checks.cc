#include "common/request_checks.h"

#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/utf8.h"

namespace hc {

absl::Status ValidateConversationKey(std::string_view id, std::string_view salt) {
  if (id.empty() || id.size() > kMaxConversationIdLength) {
    return absl::InvalidArgumentError(absl::StrCat("conversation_id must have 1 to ",
                                                   kMaxConversationIdLength, " characters, got ",
                                                   id.size()));
  }
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(
          "conversation_id may only contain the characters [A-Za-z0-9._:-]");
    }
  }
  if (salt.size() > kMaxCacheSaltBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cache_salt is ", salt.size(), " bytes, at most ", kMaxCacheSaltBytes, " allowed"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSamplingParams(const hybridcache::v1::SamplingParams& s, uint32_t vocab_size) {
  if (s.has_temperature() && !(s.temperature() >= 0.0f && std::isfinite(s.temperature()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.temperature must be finite and >= 0, got ", s.temperature()));
  }
  if (s.has_top_p() && !(s.top_p() > 0.0f && s.top_p() <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_p must be in (0, 1], got ", s.top_p()));
  }
  if (s.top_k() > static_cast<uint32_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_k must be at most ", INT32_MAX, ", got ", s.top_k()));
  }
  if (s.top_logprobs() > kMaxTopLogprobs) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.top_logprobs must be at most ",
                                                   kMaxTopLogprobs, ", got ", s.top_logprobs()));
  }
  if (s.top_logprobs() > 0 && !s.logprobs()) {
    return absl::InvalidArgumentError("sampling.top_logprobs requires sampling.logprobs");
  }
  if (s.has_max_tokens() && s.max_tokens() < 1) {
    return absl::InvalidArgumentError("sampling.max_tokens must be >= 1");
  }
  if (s.stop_size() > kMaxStopStrings) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.stop has ", s.stop_size(),
                                                   " strings; at most ", kMaxStopStrings,
                                                   " are allowed"));
  }
  if (s.stop_token_ids_size() > kMaxStopTokenIds) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.stop_token_ids has ",
                                                   s.stop_token_ids_size(), " ids; at most ",
                                                   kMaxStopTokenIds, " are allowed"));
  }
  for (int i = 0; i < s.stop_size(); ++i) {
    if (s.stop(i).size() > kMaxStopStringBytes) {
      return absl::InvalidArgumentError(absl::StrCat("sampling.stop[", i, "] has ",
                                                     s.stop(i).size(), " bytes; at most ",
                                                     kMaxStopStringBytes, " are allowed"));
    }
    if (s.stop(i).empty() || !utf8::IsValid(s.stop(i))) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampling.stop[", i, "] must be non-empty valid UTF-8"));
    }
  }
  for (int i = 0; i < s.stop_token_ids_size(); ++i) {
    if (s.stop_token_ids(i) >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampling.stop_token_ids[", i, "] = ", s.stop_token_ids(i),
                       " is outside the vocabulary (size ", vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace hc
