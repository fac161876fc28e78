// Loading the synthetic Granite-4.0-H and Nemotron-H checkpoints: exactly the
// tensor names of the real checkpoints, both Nemotron-H name roots
// ("backbone." as NVIDIA ships it, "model." as transformers saves it), and
// loader errors that name the tensor.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/worker/model/test_model.h"
#include "worker/model/model_config_io.h"
#include "worker/model/model_tensors.h"
#include "worker/model/safetensors.h"
#include "worker/model/synthetic_checkpoint.h"

namespace hc::model {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::MaxRelError;
using testing::TpRunner;

std::string Written(const std::string& preset) {
  const fs::path dir = fs::path(::testing::TempDir()) /
                       absl::StrCat("archs_", preset, "_", std::to_string(getpid()));
  fs::remove_all(dir);
  EXPECT_TRUE(WriteSyntheticCheckpoint(preset, dir.string()).ok());
  return dir.string();
}

// A view of `base` whose names have the prefix `from` replaced by `to` (names
// without it, such as lm_head.weight, stay), optionally with one tensor hidden
// or reshaped.
class RenamedSource final : public TensorSource {
 public:
  RenamedSource(const TensorSource& base, std::string from, std::string to)
      : base_(base), from_(std::move(from)), to_(std::move(to)) {}
  std::string hide;        // Get/Has of this (new) name fail
  std::string flat_shape;  // this (new) name reports a flattened shape
  absl::StatusOr<TensorView> Get(std::string_view name) const override {
    const bool renamed = name.substr(0, to_.size()) == to_;
    if (name == hide || (!renamed && name.substr(0, from_.size()) == from_)) {
      return absl::NotFoundError(absl::StrCat("no tensor ", std::string(name)));
    }
    auto v = base_.Get(renamed ? Base(name) : std::string(name));
    if (v.ok() && name == flat_shape) v->shape = {static_cast<int64_t>(v->num_bytes / 4)};
    return v;
  }
  bool Has(std::string_view name) const override { return Get(name).ok(); }
  std::vector<std::string> Names() const override { return {}; }

 private:
  std::string Base(std::string_view name) const {
    return from_ + std::string(name.substr(to_.size()));
  }
  const TensorSource& base_;
  std::string from_, to_;
};

class ArchCheckpointTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ArchCheckpointTest, HoldsExactlyTheRealTensorNamesAndLoads) {
  const std::string dir = Written(GetParam());
  auto config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  std::vector<std::string> want;
  for (const TensorSpec& s : ModelTensorSpecs(*config)) want.push_back(s.name);
  std::vector<std::string> got = (*ckpt)->Names();
  std::sort(want.begin(), want.end());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, want);
  auto runner = TpRunner::Create(*config, **ckpt, 2, 8, 16, 2);
  EXPECT_TRUE(runner.ok()) << runner.status();
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Presets, ArchCheckpointTest,
                         ::testing::Values("granite-tiny", "granite-moe-tiny", "nemotron-tiny"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(ArchCheckpointNamesTest, SpotChecksAgainstThePublishedCheckpoints) {
  const std::string granite = Written("granite-moe-tiny");
  const std::string nemotron = Written("nemotron-tiny");
  auto g = SafetensorsCheckpoint::Open(granite);
  auto n = SafetensorsCheckpoint::Open(nemotron);
  ASSERT_TRUE(g.ok() && n.ok());
  for (const char* name :
       {"model.embed_tokens.weight", "model.norm.weight", "model.layers.0.input_layernorm.weight",
        "model.layers.0.post_attention_layernorm.weight", "model.layers.0.mamba.in_proj.weight",
        "model.layers.2.self_attn.q_proj.weight", "model.layers.0.shared_mlp.input_linear.weight",
        "model.layers.0.shared_mlp.output_linear.weight",
        "model.layers.1.block_sparse_moe.router.layer.weight",
        "model.layers.1.block_sparse_moe.input_linear.weight",
        "model.layers.1.block_sparse_moe.output_linear.weight"}) {
    EXPECT_TRUE((*g)->Has(name)) << name;
  }
  // nemotron-tiny is "M-M*EM-".
  for (const char* name :
       {"backbone.embeddings.weight", "backbone.norm_f.weight", "backbone.layers.0.norm.weight",
        "backbone.layers.0.mixer.A_log", "backbone.layers.1.mixer.up_proj.weight",
        "backbone.layers.3.mixer.o_proj.weight", "backbone.layers.4.mixer.gate.weight",
        "backbone.layers.4.mixer.gate.e_score_correction_bias",
        "backbone.layers.4.mixer.experts.7.down_proj.weight",
        "backbone.layers.4.mixer.shared_experts.up_proj.weight", "lm_head.weight"}) {
    EXPECT_TRUE((*n)->Has(name)) << name;
  }
  fs::remove_all(granite);
  fs::remove_all(nemotron);
}

TEST(ArchCheckpointNamesTest, NemotronLoadsUnderEitherRootWithTheSameLogits) {
  const std::string dir = Written("nemotron-tiny");
  auto config = LoadModelConfig(dir);
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(config.ok() && ckpt.ok());
  const RenamedSource renamed(**ckpt, "backbone.", "model.");
  auto a = TpRunner::Create(*config, **ckpt, 1, 8, 16, 1);
  auto b = TpRunner::Create(*config, renamed, 1, 8, 16, 1);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  const std::vector<int32_t> tokens = {5, 17, 99, 3, 250, 7};
  const std::vector<int32_t> table = {0};
  ForwardBatch batch{{{.token_ids = tokens, .block_table = table, .need_logits = true}}};
  ASSERT_TRUE((*a)->cache().ZeroMambaSlot(0).ok());
  ASSERT_TRUE((*b)->cache().ZeroMambaSlot(0).ok());
  auto la = (*a)->Forward(batch);
  auto lb = (*b)->Forward(batch);
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_EQ(*la, *lb);
  fs::remove_all(dir);
}

TEST(ArchCheckpointNamesTest, MissingOrMisshapenTensorIsAnErrorNamingIt) {
  const std::string dir = Written("nemotron-tiny");
  auto config = LoadModelConfig(dir);
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(config.ok() && ckpt.ok());
  RenamedSource missing(**ckpt, "backbone.", "backbone.");
  missing.hide = "backbone.layers.4.mixer.experts.3.up_proj.weight";
  auto r = TpRunner::Create(*config, missing, 1, 8, 16, 1);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr(missing.hide));

  RenamedSource misshapen(**ckpt, "backbone.", "backbone.");
  misshapen.flat_shape = "backbone.layers.4.mixer.gate.weight";
  r = TpRunner::Create(*config, misshapen, 1, 8, 16, 1);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr(misshapen.flat_shape));

  // Neither root present: the error names the "backbone." tensor.
  RenamedSource neither(**ckpt, "backbone.", "nothing.");
  r = TpRunner::Create(*config, neither, 1, 8, 16, 1);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("backbone.embeddings.weight"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace hc::model
