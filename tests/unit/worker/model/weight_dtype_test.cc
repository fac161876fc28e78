// --dtype / --kv_dtype resolution against config.json and the stored tensors.
#include "worker/model/weight_dtype.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace hc::model {
namespace {

using runtime::DType;

// Only model.embed_tokens.weight, of a given dtype.
class EmbedOnlySource final : public TensorSource {
 public:
  explicit EmbedOnlySource(DType dtype) : dtype_(dtype) {}
  absl::StatusOr<TensorView> Get(std::string_view name) const override {
    if (name != "model.embed_tokens.weight") return absl::NotFoundError(std::string(name));
    return TensorView{.dtype = dtype_, .shape = {1, 1}, .data = &bits_, .num_bytes = 2};
  }
  bool Has(std::string_view name) const override { return name == "model.embed_tokens.weight"; }
  std::vector<std::string> Names() const override { return {"model.embed_tokens.weight"}; }

 private:
  DType dtype_;
  uint32_t bits_ = 0;
};

class WeightDTypeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::create_directories(dir_);
  }
  void WriteConfig(const std::string& json) { std::ofstream(dir_ / "config.json") << json; }
  absl::StatusOr<ModelDTypes> Resolve(std::string_view dtype, std::string_view kv, DType stored) {
    return ResolveModelDTypes(dtype, kv, dir_.string(), EmbedOnlySource(stored));
  }
  std::filesystem::path dir_;
};

TEST_F(WeightDTypeTest, AutoFollowsTorchDtypeAndKvFollowsWeights) {
  WriteConfig(R"({"torch_dtype": "bfloat16"})");
  const auto d = Resolve("auto", "auto", DType::kF32).value();
  EXPECT_EQ(d.weights, DType::kBF16);
  EXPECT_EQ(d.kv, DType::kBF16);
  const auto kv32 = Resolve("auto", "float32", DType::kF32).value();
  EXPECT_EQ(kv32.weights, DType::kBF16);
  EXPECT_EQ(kv32.kv, DType::kF32);
}

TEST_F(WeightDTypeTest, ConfigWithPythonInfinityLiteralsIsRead) {
  WriteConfig(R"({"time_step_limit": [0.0, Infinity], "torch_dtype": "bfloat16"})");
  EXPECT_EQ(Resolve("auto", "auto", DType::kF32)->weights, DType::kBF16);
}

TEST_F(WeightDTypeTest, AutoWithoutTorchDtypeUsesTheStoredEmbedding) {
  WriteConfig(R"({"model_type": "bamba"})");
  EXPECT_EQ(Resolve("auto", "auto", DType::kBF16)->weights, DType::kBF16);
  EXPECT_EQ(Resolve("auto", "auto", DType::kF32)->weights, DType::kF32);
}

TEST_F(WeightDTypeTest, Float16CheckpointLoadsAsFloat32UnlessAsked) {
  WriteConfig(R"({"torch_dtype": "float16"})");
  EXPECT_EQ(Resolve("auto", "auto", DType::kF16)->weights, DType::kF32);
  EXPECT_EQ(Resolve("bfloat16", "auto", DType::kF16)->weights, DType::kBF16);
}

TEST_F(WeightDTypeTest, ExplicitFlagsOverrideTheCheckpoint) {
  WriteConfig(R"({"torch_dtype": "bfloat16"})");
  const auto d = Resolve("float32", "bfloat16", DType::kBF16).value();
  EXPECT_EQ(d.weights, DType::kF32);
  EXPECT_EQ(d.kv, DType::kBF16);
}

TEST_F(WeightDTypeTest, BadValuesAreInvalidArgumentNamingTheFlagOrKey) {
  WriteConfig(R"({"torch_dtype": "bfloat16"})");
  auto bad_flag = Resolve("half", "auto", DType::kBF16);
  EXPECT_EQ(bad_flag.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_flag.status().message().find("--dtype=half"), std::string::npos);
  auto bad_kv = Resolve("auto", "fp8", DType::kBF16);
  EXPECT_NE(bad_kv.status().message().find("--kv_dtype=fp8"), std::string::npos);
  WriteConfig(R"({"torch_dtype": "float8_e4m3fn"})");
  auto bad_key = Resolve("auto", "auto", DType::kBF16);
  EXPECT_EQ(bad_key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_key.status().message().find("torch_dtype \"float8_e4m3fn\""), std::string::npos);
}

}  // namespace
}  // namespace hc::model
