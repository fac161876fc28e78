// The normalizer of a tokenizer.json, as the `tokenizers` library applies it
// to the text between non-normalized added tokens. Supported: null, Sequence,
// Prepend, Replace (String or Regex pattern) and the Unicode forms NFC, NFKC,
// NFD, NFKD (ICU's implementation). Input and output are valid UTF-8.
// Thread-safety: immutable after FromJson.
#ifndef HC_COMMON_TEXT_NORMALIZER_H_
#define HC_COMMON_TEXT_NORMALIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/json.h"

namespace hc {

class Normalizer {
 public:
  class Step {
   public:
    virtual ~Step() = default;
    virtual std::string Apply(std::string_view text) const = 0;
  };

  // `spec` is the "normalizer" value; null / missing gives the identity.
  // UNIMPLEMENTED names an unsupported normalizer.
  static absl::StatusOr<std::unique_ptr<Normalizer>> FromJson(const json::Value* spec);

  bool is_identity() const { return steps_.empty(); }
  std::string Normalize(std::string_view text) const;

 private:
  Normalizer() = default;
  std::vector<std::unique_ptr<Step>> steps_;
};

}  // namespace hc

#endif  // HC_COMMON_TEXT_NORMALIZER_H_
