// GPT-2's byte-level alphabet, shared by the byte-level BPE tokenizer, its
// trainer and the synthetic tokenizer, and the GPT-2 split.
#ifndef HC_COMMON_TEXT_BYTE_LEVEL_H_
#define HC_COMMON_TEXT_BYTE_LEVEL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hc {

// The GPT-2 pre-tokenizer regex, as the `tokenizers` ByteLevel pre-tokenizer
// runs it when use_regex is true.
inline constexpr std::string_view kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// The GPT-2 pre-tokenizer split: pieces of `text` (views into it) whose
// concatenation is `text`. Maximal runs of valid UTF-8 are split by
// kGpt2SplitPattern (run by Oniguruma, as `tokenizers` does); each byte that is
// not part of a valid UTF-8 sequence is a piece of its own.
std::vector<std::string_view> SplitGpt2(std::string_view text);

// GPT-2's reversible byte -> printable code point map used by byte-level BPE
// (bytes '!'..'~', 0xA1..0xAC, 0xAE..0xFF map to themselves, the other 68 to
// U+0100..U+0143 in order). Returns the UTF-8 of the mapped code point.
const std::string& ByteToUnicode(uint8_t byte);
// Raw bytes of a token string, as the `tokenizers` ByteLevel decoder computes
// them: each code point of the alphabet becomes its byte; a token holding any
// code point outside the alphabet (an added token such as "\n") keeps its
// UTF-8 bytes unchanged, whole.
std::string ByteLevelDecode(std::string_view token);
// Maps raw bytes to their byte-level token string.
std::string ByteLevelEncode(std::string_view bytes);

}  // namespace hc

#endif  // HC_COMMON_TEXT_BYTE_LEVEL_H_
