// The pre-tokenizer of a tokenizer.json: cuts text into the words that BPE
// encodes one by one, exactly as the `tokenizers` library does for the
// supported components:
//
//   Split       pattern {"Regex": ...} or {"String": ...}; behavior Isolated,
//               Removed, MergedWithPrevious, MergedWithNext or Contiguous;
//               invert
//   Digits      individual_digits (a Split on \p{N}, Isolated or Contiguous)
//   ByteLevel   add_prefix_space; use_regex (the GPT-2 split); it must be the
//               last step, because our BPE works on raw bytes (steps after it
//               would see the byte-level alphabet in `tokenizers`)
//   Sequence    of the above
//
// Input pieces must be valid UTF-8 (Tokenizer cuts invalid bytes out first).
// Thread-safety: immutable after FromJson; Run may be called concurrently.
#ifndef HC_COMMON_TEXT_PRE_TOKENIZER_H_
#define HC_COMMON_TEXT_PRE_TOKENIZER_H_

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/json.h"

namespace hc {

class PreTokenizer {
 public:
  // One step of the pipeline; each maps a piece to its sub-pieces.
  class Step {
   public:
    virtual ~Step() = default;
    // Appends the non-empty sub-pieces of `piece` (non-empty) to `out`. A
    // piece that is not a view into the caller's text is kept in `arena`.
    virtual void Apply(std::string_view piece, std::vector<std::string_view>* out,
                       std::deque<std::string>* arena) const = 0;
  };

  // `spec` is the "pre_tokenizer" value. UNIMPLEMENTED names an unsupported
  // type or option; INVALID_ARGUMENT a malformed one. A null / missing
  // pre-tokenizer is UNIMPLEMENTED too: our BPE needs the ByteLevel step.
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> FromJson(const json::Value* spec);

  // Appends the words of `text` (valid UTF-8, non-empty) to `words`. Words are
  // views into `text` or into strings appended to `arena` (which must outlive
  // them).
  void Run(std::string_view text, std::vector<std::string_view>* words,
           std::deque<std::string>* arena) const;

 private:
  PreTokenizer() = default;
  std::vector<std::unique_ptr<Step>> steps_;
};

}  // namespace hc

#endif  // HC_COMMON_TEXT_PRE_TOKENIZER_H_
