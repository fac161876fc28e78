// config.json of Granite-4.0-H (granitemoehybrid) and Nemotron-H (nemotron_h):
// the keys as the released checkpoints write them, transformers' defaults,
// the round trip through ModelConfigToJson, and errors naming key and value.
#include <cmath>
#include <string>

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/model/model_config_io.h"

namespace hc::model {
namespace {

using ::testing::HasSubstr;

// Shaped like ibm-granite/granite-4.0-h-micro's config.json (sizes shrunk).
constexpr char kGranite[] = R"({
  "architectures": ["GraniteMoeHybridForCausalLM"],
  "model_type": "granitemoehybrid",
  "attention_bias": false,
  "attention_multiplier": 0.0078125,
  "bos_token_id": 100257, "eos_token_id": 100257, "pad_token_id": 100256,
  "embedding_multiplier": 12,
  "hidden_act": "silu",
  "hidden_size": 256,
  "intermediate_size": 512,
  "layer_types": ["mamba", "mamba", "attention", "mamba"],
  "logits_scaling": 8,
  "mamba_chunk_size": 256, "mamba_conv_bias": true, "mamba_d_conv": 4, "mamba_d_head": 64,
  "mamba_d_state": 128, "mamba_expand": 2, "mamba_n_groups": 1, "mamba_n_heads": 8,
  "mamba_proj_bias": false,
  "max_position_embeddings": 131072,
  "normalization_function": "rmsnorm",
  "num_attention_heads": 4, "num_key_value_heads": 2,
  "num_experts_per_tok": 0, "num_local_experts": 0,
  "num_hidden_layers": 4,
  "position_embedding_type": "nope",
  "residual_multiplier": 0.22,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null, "rope_theta": 10000,
  "shared_intermediate_size": 768,
  "tie_word_embeddings": true,
  "vocab_size": 100352
})";

// Shaped like nvidia/Nemotron-H-8B-Base-8K's config.json (sizes shrunk).
constexpr char kNemotron[] = R"({
  "architectures": ["NemotronHForCausalLM"],
  "model_type": "nemotron_h",
  "attention_bias": false, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
  "chunk_size": 128, "conv_kernel": 4, "expand": 2, "head_dim": 32,
  "hidden_size": 128,
  "hybrid_override_pattern": "M-M*-E",
  "intermediate_size": 320,
  "layer_norm_epsilon": 1e-05,
  "mamba_head_dim": 32, "mamba_hidden_act": "silu", "mamba_num_heads": 8,
  "mamba_proj_bias": false, "mlp_bias": false, "mlp_hidden_act": "relu2",
  "n_groups": 4, "num_attention_heads": 4, "num_hidden_layers": 6, "num_key_value_heads": 2,
  "residual_in_fp32": false, "ssm_state_size": 16, "tie_word_embeddings": false,
  "time_step_limit": [0.0, Infinity], "time_step_max": 0.1, "time_step_min": 0.001,
  "use_bias": false, "use_conv_bias": true, "vocab_size": 1000,
  "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
  "moe_shared_expert_intermediate_size": 96, "n_group": 2, "topk_group": 1,
  "norm_topk_prob": true, "routed_scaling_factor": 2.5, "moe_latent_size": null
})";

std::string Replace(std::string_view text, std::string_view from, std::string_view to) {
  return absl::StrReplaceAll(
      absl::string_view(text.data(), text.size()),
      {{absl::string_view(from.data(), from.size()), absl::string_view(to.data(), to.size())}});
}

TEST(ModelConfigArchsTest, ParsesGraniteMicroLikeConfig) {
  auto c = ParseModelConfig(kGranite);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kGraniteMoeHybrid);
  EXPECT_EQ(c->AttentionLayerIndices(), std::vector<int>{2});
  EXPECT_EQ(c->layers[0], (LayerSpec{MixerKind::kMamba, FfnKind::kMlp}));
  EXPECT_EQ(c->intermediate_size, 768);  // the shared MLP
  EXPECT_FALSE(c->use_rope);
  EXPECT_FLOAT_EQ(c->attention_scale(), 0.0078125f);
  EXPECT_FLOAT_EQ(c->embedding_multiplier, 12.0f);
  EXPECT_FLOAT_EQ(c->residual_multiplier, 0.22f);
  EXPECT_FLOAT_EQ(c->logits_scaling, 8.0f);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->CountFfns(FfnKind::kMoe), 0);
}

TEST(ModelConfigArchsTest, GraniteWithExpertsHasMoeLayersAndRope) {
  auto c = ParseModelConfig(
      Replace(Replace(kGranite, "\"num_experts_per_tok\": 0, \"num_local_experts\": 0",
                      "\"num_experts_per_tok\": 2, \"num_local_experts\": 4"),
              "\"nope\"", "\"rope\""));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->CountFfns(FfnKind::kMoe), 4);
  EXPECT_EQ(c->num_experts, 4);
  EXPECT_EQ(c->moe_intermediate_size, 512);         // intermediate_size: one expert
  EXPECT_EQ(c->moe_shared_intermediate_size, 768);  // shared_intermediate_size
  EXPECT_EQ(c->moe_router, MoeRouter::kSoftmaxTopK);
  EXPECT_TRUE(c->use_rope);
  EXPECT_EQ(c->rotary_dim(), 64);  // the whole head
}

TEST(ModelConfigArchsTest, ParsesNemotronHLikeConfig) {
  auto c = ParseModelConfig(kNemotron);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kNemotronH);
  ASSERT_EQ(c->num_hidden_layers, 6);
  EXPECT_EQ(c->layers[0], (LayerSpec{MixerKind::kMamba, FfnKind::kNone}));
  EXPECT_EQ(c->layers[1], (LayerSpec{MixerKind::kNone, FfnKind::kMlp}));
  EXPECT_EQ(c->layers[3], (LayerSpec{MixerKind::kAttention, FfnKind::kNone}));
  EXPECT_EQ(c->layers[5], (LayerSpec{MixerKind::kNone, FfnKind::kMoe}));
  EXPECT_EQ(c->mlp_activation, MlpActivation::kRelu2);
  EXPECT_FALSE(c->use_rope);
  EXPECT_FLOAT_EQ(c->attention_scale(), 1.0f / std::sqrt(32.0f));
  EXPECT_EQ(c->d_inner(), 256);
  EXPECT_EQ(c->mamba_n_groups, 4);
  EXPECT_FLOAT_EQ(c->time_step_min_limit, 0.001f);  // (time_step_min, inf), as transformers
  EXPECT_TRUE(std::isinf(c->time_step_max_limit));
  EXPECT_EQ(c->moe_router, MoeRouter::kSigmoidGroupTopK);
  EXPECT_EQ(c->moe_n_group, 2);
  EXPECT_FLOAT_EQ(c->moe_routed_scaling_factor, 2.5f);
  EXPECT_EQ(c->moe_shared_intermediate_size, 96);
}

TEST(ModelConfigArchsTest, NemotronLayersBlockTypeListEqualsThePattern) {
  auto a = ParseModelConfig(kNemotron);
  auto b = ParseModelConfig(Replace(kNemotron, "\"hybrid_override_pattern\": \"M-M*-E\"",
                                    "\"layers_block_type\": [\"mamba\", \"mlp\", "
                                    "\"linear_attention\", \"full_attention\", \"mlp\", \"moe\"]"));
  ASSERT_TRUE(a.ok() && b.ok()) << b.status();
  EXPECT_EQ(a->layers, b->layers);
}

// Nemotron-H checkpoints that ship their own configuration_nemotron_h.py
// (e.g. nvidia/Nemotron-H-56B-Base-8K) name the attention head size
// attention_head_dim; their modeling code sizes q/k/v by it.
TEST(ModelConfigArchsTest, NemotronAttentionHeadDimIsTheHeadDimWhenHeadDimIsAbsent) {
  auto c = ParseModelConfig(Replace(kNemotron, "\"head_dim\": 32", "\"attention_head_dim\": 48"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 48);
  auto same = ParseModelConfig(
      Replace(kNemotron, "\"head_dim\": 32", "\"head_dim\": 32, \"attention_head_dim\": 32"));
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->head_dim, 32);
}

TEST(ModelConfigArchsTest, NemotronConflictingHeadDimsAreAnErrorNamingBoth) {
  auto c = ParseModelConfig(
      Replace(kNemotron, "\"head_dim\": 32", "\"head_dim\": 32, \"attention_head_dim\": 64"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("attention_head_dim"));
  EXPECT_THAT(c.status().message(), HasSubstr("head_dim (32)"));
}

TEST(ModelConfigArchsTest, WrittenConfigsParseBackIdentically) {
  for (const char* text : {kGranite, kNemotron}) {
    auto c = ParseModelConfig(text);
    ASSERT_TRUE(c.ok()) << c.status();
    auto back = ParseModelConfig(ModelConfigToJson(*c));
    ASSERT_TRUE(back.ok()) << back.status() << "\n" << ModelConfigToJson(*c);
    EXPECT_EQ(back->architecture, c->architecture);
    EXPECT_EQ(back->layers, c->layers);
    EXPECT_EQ(back->use_rope, c->use_rope);
    EXPECT_EQ(back->attention_scale(), c->attention_scale());
    EXPECT_EQ(back->embedding_multiplier, c->embedding_multiplier);
    EXPECT_EQ(back->residual_multiplier, c->residual_multiplier);
    EXPECT_EQ(back->logits_scaling, c->logits_scaling);
    EXPECT_EQ(back->intermediate_size, c->intermediate_size);
    EXPECT_EQ(back->mamba_n_groups, c->mamba_n_groups);
    EXPECT_EQ(back->time_step_min_limit, c->time_step_min_limit);
    EXPECT_EQ(back->num_experts, c->num_experts);
    EXPECT_EQ(back->moe_shared_intermediate_size, c->moe_shared_intermediate_size);
    EXPECT_EQ(back->moe_routed_scaling_factor, c->moe_routed_scaling_factor);
  }
}

TEST(ModelConfigArchsTest, ErrorsNameKeyAndValueWithTheRightCode) {
  struct Case {
    std::string text;
    absl::StatusCode code;
    std::string expect;
  };
  const Case cases[] = {
      {Replace(kGranite, "\"nope\"", "\"alibi\""), absl::StatusCode::kInvalidArgument,
       "position_embedding_type"},
      {Replace(kGranite, "\"attention\", \"mamba\"]", "\"attention\", \"conv\"]"),
       absl::StatusCode::kInvalidArgument, "\"conv\""},
      {Replace(kGranite, "\"mamba\", \"mamba\", \"attention\", \"mamba\"", "\"mamba\""),
       absl::StatusCode::kInvalidArgument, "layer_types"},
      {Replace(kGranite, "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\""),
       absl::StatusCode::kUnimplemented, "\"hidden_act\" = \"gelu\""},
      {Replace(kGranite, "\"attention_bias\": false", "\"attention_bias\": true"),
       absl::StatusCode::kUnimplemented, "attention_bias"},
      {Replace(kGranite, "\"attention_multiplier\": 0.0078125", "\"attention_multiplier\": 0"),
       absl::StatusCode::kInvalidArgument, "attention_multiplier"},
      {Replace(kGranite, "\"num_experts_per_tok\": 0, \"num_local_experts\": 0",
               "\"num_experts_per_tok\": 5, \"num_local_experts\": 4"),
       absl::StatusCode::kInvalidArgument, "num_experts_per_tok"},
      {Replace(kNemotron, "\"M-M*-E\"", "\"M-M*-X\""), absl::StatusCode::kInvalidArgument,
       "hybrid_override_pattern"},
      {Replace(kNemotron, "\"num_hidden_layers\": 6", "\"num_hidden_layers\": 7"),
       absl::StatusCode::kInvalidArgument, "num_hidden_layers"},
      {Replace(kNemotron, "\"relu2\"", "\"silu\""), absl::StatusCode::kUnimplemented,
       "\"mlp_hidden_act\" = \"silu\""},
      {Replace(kNemotron, "\"moe_latent_size\": null", "\"moe_latent_size\": 64"),
       absl::StatusCode::kUnimplemented, "moe_latent_size"},
      {Replace(kNemotron, "\"use_bias\": false", "\"use_bias\": true"),
       absl::StatusCode::kUnimplemented, "use_bias"},
      {Replace(kNemotron, "\"attention_bias\": false", "\"attention_bias\": true"),
       absl::StatusCode::kUnimplemented, "\"attention_bias\" = true"},
      {Replace(kNemotron, "\"n_groups\": 4", "\"n_groups\": 3"), absl::StatusCode::kInvalidArgument,
       "n_groups"},
      {Replace(kNemotron, "\"n_group\": 2", "\"n_group\": 3"), absl::StatusCode::kInvalidArgument,
       "n_group"},
      {Replace(kNemotron, "\"NemotronHForCausalLM\"", "\"NemotronHForSomething\""),
       absl::StatusCode::kUnimplemented, "architectures"},
  };
  for (const Case& tc : cases) {
    auto c = ParseModelConfig(tc.text);
    ASSERT_FALSE(c.ok()) << "accepted a config that should fail with " << tc.expect;
    EXPECT_EQ(c.status().code(), tc.code) << c.status();
    EXPECT_THAT(c.status().message(), HasSubstr(tc.expect));
  }
}

}  // namespace
}  // namespace hc::model
