// What a checkpoint's tokenizer_config.json says about the special tokens
// around a sequence: add_bos_token / add_eos_token and the BOS / EOS tokens.
// The chat-template path renders BOS itself when the template asks for it;
// other callers (plain completion) ask BosToPrepend / EosToAppend.
#ifndef HC_COMMON_TEXT_TOKENIZER_CONFIG_H_
#define HC_COMMON_TEXT_TOKENIZER_CONFIG_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/text/tokenizer.h"

namespace hc {

struct TokenizerConfig {
  std::optional<bool> add_bos_token;  // absent: the file does not say
  std::optional<bool> add_eos_token;
  std::string bos_token;  // content; empty when absent
  std::string eos_token;

  // INVALID_ARGUMENT when the text is not a JSON object or a field has the
  // wrong type (bos_token / eos_token: a string, an {"content": ...} object or
  // null).
  static absl::StatusOr<TokenizerConfig> FromJson(std::string_view json_text);
  // <dir>/tokenizer_config.json; a missing file gives an empty config.
  static absl::StatusOr<TokenizerConfig> FromModelDir(const std::string& dir);
};

// The id to put before a sequence, as transformers' encode with
// add_special_tokens=True does: when add_bos_token is given it decides (the
// fast tokenizer rebuilds its post-processor from it); when absent, the
// tokenizer.json post-processor's own tokens apply and this returns nothing.
// Nothing either when bos_token is not a token of `tok`.
std::optional<TokenId> BosToPrepend(const TokenizerConfig& config, const Tokenizer& tok);
// Likewise for EOS after the sequence.
std::optional<TokenId> EosToAppend(const TokenizerConfig& config, const Tokenizer& tok);

}  // namespace hc

#endif  // HC_COMMON_TEXT_TOKENIZER_CONFIG_H_
