// The tokenizer of the synthetic checkpoints (hc-checkpoint, --model
// synthetic:<preset>): a byte-level BPE trained deterministically on an
// embedded corpus, with Granite-style special tokens and chat template. It
// lives in common/ because both processes need it: the worker writes it into
// the generated checkpoint, and a router that runs without that checkpoint
// (its own pod) regenerates the identical files for itself.
#ifndef HC_COMMON_TEXT_SYNTHETIC_TOKENIZER_H_
#define HC_COMMON_TEXT_SYNTHETIC_TOKENIZER_H_

#include <optional>
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

struct SyntheticTokenizerSpec {
  int vocab_target = 1024;  // special + byte tokens + merges
  int augment_rounds = 0;   // corpus variety (larger vocabularies need more)
  int model_max_length = 4096;
  // The pipeline of the family the checkpoint imitates: GPT-2 (the default,
  // the bamba checkpoints), Granite-4.0 or Nemotron-H (pre_tokenizer_style.h).
  // The special tokens are the synthetic family's in every style (the worker
  // and the chat template rely on their ids); the vocabulary is trained with
  // the style's split.
  PreTokenizerStyle pre_tokenizer = PreTokenizerStyle::kGpt2;
  // The chat template the checkpoint ships (ChatTemplate::ByName): the
  // built-in "granite", or a real one: "granite-4.0-h" for the granite-*
  // presets (the synthetic special tokens), "nemotron-nano-v2" for the
  // nemotron-nano-* ones, whose tokenizer adds NVIDIA-Nemotron-Nano-v2's
  // special tokens (SyntheticSpecialTokens(spec)), "qwen3" for the *-qwen3-*
  // ones, whose tokenizer adds Qwen3's <|im_start|> and <|im_end|>.
  std::string chat_template = "granite";
};

// The special tokens of `spec`, ids 0..: SyntheticSpecialTokens(), then for
// the "nemotron-nano-v2" template <SPECIAL_10> (system), <SPECIAL_11> (role)
// and <SPECIAL_12> (end of turn), ids 4, 5, 6; for the "qwen3" template
// <|im_start|> and <|im_end|> (end of turn), ids 4, 5. (Qwen3's <think> and
// </think> are not special: the template strips reasoning by text.)
std::vector<std::string> SyntheticSpecialTokens(const SyntheticTokenizerSpec& spec);
// The id that ends an assistant turn (and is the model's EOS) with the chat
// template named `chat_template`: <SPECIAL_12> for "nemotron-nano-v2",
// <|im_end|> for "qwen3", <|end_of_text|> otherwise.
int SyntheticEndOfTurnId(std::string_view chat_template);

// INVALID_ARGUMENT for an unknown preset (tiny, small). Presets of other
// architectures, "<arch>[-variant]-tiny|small" (e.g. granite-moe-tiny), use the
// tokenizer of their size in their family's pipeline: "granite-*" Granite-4.0's,
// "nemotron-*" Nemotron-H's, others GPT-2's, unless `pre_tokenizer` says;
// "nemotron-nano-*" ships the "nemotron-nano-v2" chat template, "*-qwen3-*"
// the "qwen3" one.
absl::StatusOr<SyntheticTokenizerSpec> SyntheticTokenizerSpecFor(
    std::string_view preset, std::optional<PreTokenizerStyle> pre_tokenizer = std::nullopt);

// Deterministic: the same spec gives the same vocabulary and merges.
BpeModel TrainSyntheticTokenizer(const SyntheticTokenizerSpec& spec);

// tokenizer_config.json for `tok`: special tokens, the chat template named
// `chat_template` (ChatTemplate::ByName; CHECK-fails on an unknown name, which
// only SyntheticTokenizerSpecFor sets), model_max_length.
std::string SyntheticTokenizerConfigJson(const BpeModel& tok, int model_max_length,
                                         std::string_view chat_template = "granite");

// Writes tokenizer.json and tokenizer_config.json of `preset` (in the style
// `pre_tokenizer` when given, else the preset's) into `dir` (created if needed).
absl::Status WriteSyntheticTokenizerFiles(
    std::string_view preset, const std::string& dir,
    std::optional<PreTokenizerStyle> pre_tokenizer = std::nullopt);

}  // namespace hc

#endif  // HC_COMMON_TEXT_SYNTHETIC_TOKENIZER_H_
