// Internal to worker/model: typed reads of config.json keys with errors that
// name the key (shared by the per-architecture parsers of model_config_io*.cc).
#ifndef HC_WORKER_MODEL_CONFIG_JSON_H_
#define HC_WORKER_MODEL_CONFIG_JSON_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "common/json.h"
#include "worker/model/model_config.h"

namespace hc::model::internal {

// INVALID_ARGUMENT "config.json: "<key>" <what>".
absl::Status KeyError(std::string_view key, std::string_view what);
// UNIMPLEMENTED "config.json: "<key>" = <value> is not supported (<why>)".
absl::Status KeyUnsupported(std::string_view key, const json::Value& value, std::string_view why);

class ConfigReader {
 public:
  explicit ConfigReader(const json::Value& root) : root_(root) {}
  const json::Value& root() const { return root_; }
  // The value of `key`, or nullptr when absent or null.
  const json::Value* Find(const char* key) const;

  // Each sets *out when the key is present and not null; a required key must be.
  absl::Status Int(const char* key, bool required, int* out) const;
  absl::Status Float(const char* key, float* out) const;
  absl::Status Bool(const char* key, bool* out) const;
  absl::Status String(const char* key, std::string* out) const;
  // Token ids: an int, null (-1), or a list (its first element).
  absl::Status TokenId(const char* key, int* out) const;
  // UNIMPLEMENTED when `key` is present, not null and not equal to `supported`.
  absl::Status RequireBool(const char* key, bool supported, std::string_view why) const;
  absl::Status RequireString(const char* key, std::string_view supported,
                             std::string_view why) const;

 private:
  const json::Value& root_;
};

// The double whose shortest decimal form reads back as `f`.
json::Value FloatValue(float f);

// Shared readers of keys that every architecture names the same way.
absl::Status ReadVocabAndTokens(const ConfigReader& r, ModelConfig& c);
absl::Status ReadAttentionHeads(const ConfigReader& r, ModelConfig& c);
// rope_theta at top level or in rope_parameters; scaled RoPE is UNIMPLEMENTED.
absl::Status ReadRope(const ConfigReader& r, ModelConfig& c);
// mamba_d_head: an integer or "auto" (= mamba_expand * hidden_size / mamba_n_heads).
absl::Status ReadMambaHeadDim(const ConfigReader& r, ModelConfig& c);
// time_step_limit: a list of two numbers.
absl::Status ReadTimeStepLimit(const ConfigReader& r, const char* key, ModelConfig& c);

// Per-architecture parsers (root already known to have that model_type) and writers.
absl::Status ParseGraniteMoeHybrid(const ConfigReader& r, ModelConfig& c);
absl::Status ParseNemotronH(const ConfigReader& r, ModelConfig& c);
void GraniteMoeHybridToJson(const ModelConfig& c, json::Value& root);
void NemotronHToJson(const ModelConfig& c, json::Value& root);
// Keys every writer emits the same way (vocab, tokens, attention heads, ...).
void CommonToJson(const ModelConfig& c, json::Value& root, bool write_head_dim = true);
// The mamba_* keys and time_step_limit as Bamba and Granite-4.0-H write them.
void MambaKeysToJson(const ModelConfig& c, json::Value& root);

}  // namespace hc::model::internal

#endif  // HC_WORKER_MODEL_CONFIG_JSON_H_
