// The post_processor of a tokenizer.json: what `tokenizers` adds around the
// ids of a single sequence when encoding with add_special_tokens=True.
// Supported: null and ByteLevel (no ids added), TemplateProcessing (its
// "single" template: special tokens and the sequence $A), and a Sequence of
// these. Thread-safety: immutable after FromJson.
#ifndef HC_COMMON_TEXT_POST_PROCESSOR_H_
#define HC_COMMON_TEXT_POST_PROCESSOR_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/json.h"

namespace hc {

class PostProcessor {
 public:
  // UNIMPLEMENTED names an unsupported processor; INVALID_ARGUMENT a
  // malformed template.
  static absl::StatusOr<PostProcessor> FromJson(const json::Value* spec);

  // `ids` with the template's special tokens around them.
  std::vector<int32_t> Apply(absl::Span<const int32_t> ids) const;
  // Ids the template puts before / after the sequence.
  const std::vector<int32_t>& prefix() const { return prefix_; }
  const std::vector<int32_t>& suffix() const { return suffix_; }

 private:
  absl::Status ParseTemplate(const json::Value& spec);
  std::vector<int32_t> prefix_, suffix_;
};

}  // namespace hc

#endif  // HC_COMMON_TEXT_POST_PROCESSOR_H_
