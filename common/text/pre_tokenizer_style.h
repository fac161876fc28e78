// The pre-tokenizer pipelines of the model families we ship synthetic
// tokenizers for, as tokenizer.json writes them (docs/tokenizer.md has the
// sources for the real files):
//   kGpt2       ByteLevel(add_prefix_space=false, use_regex=true)
//   kGranite4   Sequence[Split(cl100k regex, Isolated), ByteLevel(use_regex=false)]
//               (IBM Granite-4.0)
//   kNemotronH  Sequence[Split(tekken regex, Isolated), ByteLevel(use_regex=false)]
//               (NVIDIA Nemotron-H / Nemotron-Nano-v2)
#ifndef HC_COMMON_TEXT_PRE_TOKENIZER_STYLE_H_
#define HC_COMMON_TEXT_PRE_TOKENIZER_STYLE_H_

#include <optional>
#include <string_view>

#include "common/json.h"

namespace hc {

enum class PreTokenizerStyle { kGpt2, kGranite4, kNemotronH };

// The OpenAI cl100k pattern as Hugging Face writes it (Llama-3, Granite-4.0).
inline constexpr std::string_view kCl100kSplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Mistral's "tekken" pattern (Mistral-NeMo, Nemotron-H).
inline constexpr std::string_view kTekkenSplitPattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// "gpt2", "granite4", "nemotron_h".
std::string_view PreTokenizerStyleName(PreTokenizerStyle style);
std::optional<PreTokenizerStyle> ParsePreTokenizerStyle(std::string_view name);

// The "pre_tokenizer" value of tokenizer.json for `style`.
json::Value PreTokenizerStyleJson(PreTokenizerStyle style);

}  // namespace hc

#endif  // HC_COMMON_TEXT_PRE_TOKENIZER_STYLE_H_
