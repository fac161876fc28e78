#include "worker/model/model_config_io.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hc::model {
namespace {

using ::testing::HasSubstr;

// A Bamba-9B-like config.json (shapes shrunk), as Hugging Face writes it.
constexpr char kConfig[] = R"({
  "architectures": ["BambaForCausalLM"],
  "model_type": "bamba",
  "hidden_size": 256,
  "intermediate_size": 512,
  "num_hidden_layers": 6,
  "attn_layer_indices": [4, 1],
  "num_attention_heads": 8,
  "num_key_value_heads": 2,
  "mamba_n_heads": 8,
  "mamba_d_head": "auto",
  "mamba_n_groups": 2,
  "mamba_d_state": 32,
  "mamba_d_conv": 4,
  "mamba_expand": 2,
  "mamba_chunk_size": 64,
  "mamba_conv_bias": true,
  "mamba_proj_bias": false,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "attn_rotary_emb": 16,
  "time_step_limit": [0.0, Infinity],
  "vocab_size": 1000,
  "tie_word_embeddings": false,
  "bos_token_id": 1,
  "eos_token_id": [2, 3],
  "pad_token_id": null,
  "max_position_embeddings": 4096
})";

std::string With(std::string_view from, std::string_view to) {
  return absl::StrReplaceAll(kConfig, {{absl::string_view(from.data(), from.size()),
                                        absl::string_view(to.data(), to.size())}});
}

TEST(ModelConfigIoTest, ParsesBambaConfig) {
  auto c = ParseModelConfig(kConfig);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 256);
  EXPECT_EQ(c->num_hidden_layers, 6);
  EXPECT_EQ(c->AttentionLayerIndices(), (std::vector<int>{1, 4}));
  EXPECT_EQ(c->num_mamba_layers(), 4);
  EXPECT_EQ(c->mamba_d_head, 64);                   // "auto" = 2 * 256 / 8
  EXPECT_EQ(c->head_dim, 32);                       // hidden / heads
  EXPECT_FLOAT_EQ(c->partial_rotary_factor, 0.5f);  // attn_rotary_emb 16 / head_dim 32
  EXPECT_EQ(c->rotary_dim(), 16);
  EXPECT_EQ(c->mamba_n_groups, 2);
  EXPECT_EQ(c->conv_dim(), 512 + 2 * 2 * 32);
  EXPECT_FLOAT_EQ(c->time_step_min_limit, 0.0f);
  EXPECT_TRUE(std::isinf(c->time_step_max_limit));
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_id, 2);  // first of the list
  EXPECT_EQ(c->pad_token_id, -1);
  EXPECT_EQ(c->max_position_embeddings, 4096);
}

TEST(ModelConfigIoTest, ExplicitHeadDimRotaryFactorAndRopeParameters) {
  std::string text =
      With("\"attn_rotary_emb\": 16,",
           "\"head_dim\": 64, \"partial_rotary_factor\": 0.25, "
           "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000.0},");
  auto c = ParseModelConfig(text);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->rotary_dim(), 16);
  EXPECT_FLOAT_EQ(c->rope_theta, 500000.0f);
}

TEST(ModelConfigIoTest, ValidationErrorsNameTheKey) {
  struct Case {
    std::string text;
    std::string expect;
  };
  const Case cases[] = {
      {With("\"mamba_d_head\": \"auto\"", "\"mamba_d_head\": 32"), "mamba_d_head"},
      {With("\"mamba_n_groups\": 2", "\"mamba_n_groups\": 3"), "mamba_n_groups"},
      {With("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"), "num_key_value_heads"},
      {With("[4, 1]", "[4, 6]"), "attn_layer_indices"},
      {With("[4, 1]", "[1, 1]"), "twice"},
      {With("\"hidden_size\": 256,", ""), "\"hidden_size\" is required"},
      {With("\"hidden_size\": 256", "\"hidden_size\": \"256\""), "hidden_size"},
      {With("\"attn_rotary_emb\": 16", "\"attn_rotary_emb\": 7"), "partial_rotary_factor"},
      {With("\"bos_token_id\": 1", "\"bos_token_id\": 1000"), "bos_token_id"},
      {With("\"mamba_conv_bias\": true", "\"mamba_conv_bias\": 1"), "mamba_conv_bias"},
      {With("[0.0, Infinity]", "[1.0, 0.5]"), "time_step_limit"},
      {With("\"vocab_size\": 1000", "\"vocab_size\": 0"), "vocab_size"},
      {"{\"model_type\": \"bamba\",", "byte"},
  };
  for (const Case& tc : cases) {
    auto c = ParseModelConfig(tc.text);
    ASSERT_FALSE(c.ok()) << "accepted a config that should fail with " << tc.expect;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(c.status().message(), HasSubstr(tc.expect));
  }
}

// BambaConfig's attention_bias / mlp_bias add biases to q/k/v/o and the MLP
// projections; the model applies none, so true is refused, not silently dropped.
TEST(ModelConfigIoTest, BiasesTheModelDoesNotApplyAreUnimplemented) {
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    auto off = ParseModelConfig(
        With("\"vocab_size\"", absl::StrCat("\"", key, "\": false, \"vocab_size\"")));
    EXPECT_TRUE(off.ok()) << key << ": " << off.status();
    auto on = ParseModelConfig(
        With("\"vocab_size\"", absl::StrCat("\"", key, "\": true, \"vocab_size\"")));
    ASSERT_FALSE(on.ok()) << key;
    EXPECT_EQ(on.status().code(), absl::StatusCode::kUnimplemented) << on.status();
    EXPECT_THAT(on.status().message(), HasSubstr(absl::StrCat("\"", key, "\" = true")));
  }
}

TEST(ModelConfigIoTest, WrittenConfigParsesBackIdentically) {
  auto c = ParseModelConfig(kConfig);
  ASSERT_TRUE(c.ok());
  c->time_step_min_limit = 0.001f;
  c->time_step_max_limit = 0.2f;
  auto back = ParseModelConfig(ModelConfigToJson(*c));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->hidden_size, c->hidden_size);
  EXPECT_EQ(back->AttentionLayerIndices(), c->AttentionLayerIndices());
  EXPECT_EQ(back->mamba_d_head, c->mamba_d_head);
  EXPECT_EQ(back->head_dim, c->head_dim);
  EXPECT_EQ(back->rotary_dim(), c->rotary_dim());
  EXPECT_EQ(back->rms_norm_eps, c->rms_norm_eps);
  EXPECT_EQ(back->time_step_min_limit, 0.001f);
  EXPECT_EQ(back->time_step_max_limit, 0.2f);
  EXPECT_EQ(back->pad_token_id, -1);
  EXPECT_EQ(back->eos_token_id, 2);
  EXPECT_THAT(ModelConfigToJson(*c), HasSubstr("\"rms_norm_eps\": 1e-05"));
  EXPECT_THAT(ModelConfigToJson(*c), HasSubstr("\"BambaForCausalLM\""));
}

TEST(ModelConfigIoTest, WrittenConfigKeepsAnInfiniteTimeStepLimit) {
  auto c = ParseModelConfig(kConfig);
  ASSERT_TRUE(c.ok());
  c->time_step_min_limit = 0.001f;  // max stays infinite: written as Infinity, not null
  auto back = ParseModelConfig(ModelConfigToJson(*c));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->time_step_min_limit, 0.001f);
  EXPECT_TRUE(std::isinf(back->time_step_max_limit));
}

TEST(ModelConfigIoTest, UnknownModelTypeIsUnimplementedNamingIt) {
  auto c = ParseModelConfig(With("\"model_type\": \"bamba\"", "\"model_type\": \"llama\""));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(c.status().message(), HasSubstr("\"model_type\" = \"llama\""));
  c = ParseModelConfig(With("\"BambaForCausalLM\"", "\"LlamaForCausalLM\""));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(c.status().message(), HasSubstr("architectures"));
}

TEST(ModelConfigIoTest, LoadModelConfigReportsMissingFile) {
  auto c = LoadModelConfig("/nonexistent/dir");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr("/nonexistent/dir"));
}

}  // namespace
}  // namespace hc::model
