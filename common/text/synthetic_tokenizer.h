// The tokenizer of the synthetic checkpoints (hc-checkpoint, --model
// synthetic:<preset>): a byte-level BPE trained deterministically on an
// embedded corpus, with Granite-style special tokens and chat template. It
// lives in common/ because both processes need it: the worker writes it into
// the generated checkpoint, and a router that runs without that checkpoint
// (its own pod) regenerates the identical files for itself.
#ifndef HC_COMMON_TEXT_SYNTHETIC_TOKENIZER_H_
#define HC_COMMON_TEXT_SYNTHETIC_TOKENIZER_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/text/bpe_trainer.h"

namespace hc {

// Special tokens, ids 0.. in this order: end of text (BOS and EOS), pad,
// start of role, end of role.
const std::vector<std::string>& SyntheticSpecialTokens();
inline constexpr int kSyntheticEndOfTextId = 0;
inline constexpr int kSyntheticPadId = 1;

// The chat format a synthetic tokenizer ships.
enum class SyntheticChat {
  // The built-in granite template; <|end_of_text|> ends a turn (and is EOS).
  kGranite,
  // NVIDIA-Nemotron-Nano-v2's real template (not prefix-stable: it writes
  // "<think>\n\n" in the generation prompt but not before earlier replies)
  // and its special tokens <SPECIAL_10> (system), <SPECIAL_11> (role),
  // <SPECIAL_12> (end of turn, and EOS), ids 4, 5, 6 after the Granite ones.
  kNemotronNano,
};

struct SyntheticTokenizerSpec {
  int vocab_target = 1024;  // special + byte tokens + merges
  int augment_rounds = 0;   // corpus variety (larger vocabularies need more)
  int model_max_length = 4096;
  SyntheticChat chat = SyntheticChat::kGranite;
};

// The special tokens of `spec` (ids 0..) and the id that ends an assistant
// turn (the model's EOS).
std::vector<std::string> SyntheticSpecialTokens(const SyntheticTokenizerSpec& spec);
int SyntheticEndOfTurnId(const SyntheticTokenizerSpec& spec);

// NVIDIA-Nemotron-Nano-v2's chat template, byte for byte as the model ships
// it (tests/data/chat_templates/nemotron-nano-v2.jinja, compiled in).
std::string_view NemotronNanoV2ChatTemplate();

// INVALID_ARGUMENT for an unknown preset (tiny, small). Presets of other
// architectures, "<arch>[-variant]-tiny|small" (e.g. granite-moe-tiny), use the
// tokenizer of their size; "nemotron-nano-*" the Nemotron-Nano chat format.
absl::StatusOr<SyntheticTokenizerSpec> SyntheticTokenizerSpecFor(std::string_view preset);

// Deterministic: the same spec gives the same vocabulary and merges.
BpeModel TrainSyntheticTokenizer(const SyntheticTokenizerSpec& spec);

// tokenizer_config.json for `tok`: special tokens, the chat template of
// `spec.chat`, model_max_length.
std::string SyntheticTokenizerConfigJson(const BpeModel& tok, const SyntheticTokenizerSpec& spec,
                                         int model_max_length);

// Writes tokenizer.json and tokenizer_config.json of `preset` into `dir`
// (created if needed).
absl::Status WriteSyntheticTokenizerFiles(std::string_view preset, const std::string& dir);

}  // namespace hc

#endif  // HC_COMMON_TEXT_SYNTHETIC_TOKENIZER_H_
