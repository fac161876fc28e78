#include "worker/model/weight_dtype.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "common/status_macros.h"

namespace hc::model {
namespace {

using runtime::DType;

absl::StatusOr<DType> ParseFlag(std::string_view flag, std::string_view value) {
  if (value == "float32") return DType::kF32;
  if (value == "bfloat16") return DType::kBF16;
  return absl::InvalidArgumentError(absl::StrCat("--", std::string(flag), "=", std::string(value),
                                                 ": expected auto, float32 or bfloat16"));
}

// The checkpoint's own dtype: config.json's torch_dtype, else the embedding's.
absl::StatusOr<DType> CheckpointDType(const std::string& model_dir, const TensorSource& source) {
  const std::filesystem::path config = std::filesystem::path(model_dir) / "config.json";
  std::ifstream in(config);
  if (in) {
    std::stringstream text;
    text << in.rdbuf();
    // Hugging Face configs may hold Python's Infinity / NaN literals.
    HC_ASSIGN_OR_RETURN(const json::Value root,
                        json::Parse(text.str(), {.allow_nan_infinity = true}));
    const json::Value* torch_dtype = root.Find("torch_dtype");
    if (torch_dtype != nullptr && torch_dtype->is_string()) {
      const std::string& name = torch_dtype->AsString();
      if (name == "float32") return DType::kF32;
      if (name == "bfloat16") return DType::kBF16;
      if (name == "float16") return DType::kF16;
      return absl::InvalidArgumentError(
          absl::StrCat(config.string(), ": torch_dtype \"", name,
                       "\" is not supported (float32, bfloat16 or float16; or pass --dtype)"));
    }
  }
  HC_ASSIGN_OR_RETURN(const TensorView embed, source.Get("model.embed_tokens.weight"));
  return embed.dtype;
}

}  // namespace

absl::StatusOr<ModelDTypes> ResolveModelDTypes(std::string_view dtype, std::string_view kv_dtype,
                                               const std::string& model_dir,
                                               const TensorSource& checkpoint) {
  ModelDTypes out;
  if (dtype == "auto") {
    HC_ASSIGN_OR_RETURN(const DType stored, CheckpointDType(model_dir, checkpoint));
    out.weights = stored == DType::kBF16 ? DType::kBF16 : DType::kF32;
  } else {
    HC_ASSIGN_OR_RETURN(out.weights, ParseFlag("dtype", dtype));
  }
  if (kv_dtype == "auto") {
    out.kv = out.weights;
  } else {
    HC_ASSIGN_OR_RETURN(out.kv, ParseFlag("kv_dtype", kv_dtype));
  }
  return out;
}

}  // namespace hc::model
