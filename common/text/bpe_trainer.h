// Deterministic byte-level BPE training, used by the synthetic checkpoint
// generator to build a small but meaningful vocabulary, and the writer of the
// matching Hugging Face `tokenizer.json`.
#ifndef HC_COMMON_TEXT_BPE_TRAINER_H_
#define HC_COMMON_TEXT_BPE_TRAINER_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/text/pre_tokenizer_style.h"

namespace hc {

struct BpeTrainerOptions {
  // Total vocabulary size: special tokens + 256 byte tokens + merges. Training
  // stops earlier when no pair reaches `min_frequency`.
  int vocab_size = 1024;
  int min_frequency = 2;
  // Added as special tokens with ids 0..n-1 (the byte tokens follow).
  std::vector<std::string> special_tokens;
  // How the corpus is cut into words (and the pre_tokenizer the tokenizer.json
  // gets).
  PreTokenizerStyle pre_tokenizer = PreTokenizerStyle::kGpt2;
};

struct BpeModel {
  // Token strings in byte-level form (GPT-2 byte-to-unicode map), index = id.
  // Special tokens keep their literal content.
  std::vector<std::string> vocab;
  int num_special = 0;  // ids [0, num_special) are the special tokens
  // Merges in rank order, byte-level form.
  std::vector<std::pair<std::string, std::string>> merges;
  PreTokenizerStyle pre_tokenizer = PreTokenizerStyle::kGpt2;
};

// Pre-tokenizes `corpus` (valid UTF-8) with the options' pre-tokenizer style
// and learns merges greedily: at each step the most frequent adjacent pair
// (ties: smallest left id, then smallest right id) is merged. Fully
// deterministic.
BpeModel TrainBpe(std::string_view corpus, const BpeTrainerOptions& options);

// A Hugging Face tokenizer.json (byte-level BPE, the model's pre-tokenizer
// style, ByteLevel decoder, special tokens as added tokens) describing `model`.
std::string BpeTokenizerJson(const BpeModel& model);

}  // namespace hc

#endif  // HC_COMMON_TEXT_BPE_TRAINER_H_
