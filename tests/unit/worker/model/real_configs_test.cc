// The released config.json files of real checkpoints (tests/data/real_configs,
// sources in its README.md) load with our loader, with no error, into the
// architecture their model cards describe. The expected numbers are written
// here from the config files and the model cards, not read back from our
// parser.
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "worker/model/model_config_io.h"

namespace hc::model {
namespace {

std::string RealConfig(const char* model) {
  return absl::StrCat(HC_REAL_CONFIGS_DIR, "/", model, "/config.json");
}

// Indices of `c`'s layers whose block is `mixer` (or whose FFN is `ffn`).
std::vector<int> Where(const ModelConfig& c, MixerKind mixer, FfnKind ffn) {
  std::vector<int> out;
  for (int i = 0; i < static_cast<int>(c.layers.size()); ++i) {
    if (c.layers[i].mixer == mixer && c.layers[i].ffn == ffn) out.push_back(i);
  }
  return out;
}

// ibm-ai-platform/Bamba-9B: 32 layers, attention at 9, 18, 27 (model card:
// "3 attention layers" of 32), hidden 4096, 32 heads / 8 KV heads, Mamba2
// 128 heads x 64, d_state 128, one group, vocab 128256 (Llama 3 tokenizer),
// RoPE on half the head (attn_rotary_emb 64 of head_dim 128).
TEST(RealConfigsTest, Bamba9B) {
  auto c = LoadModelConfig(RealConfig("bamba-9b"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kBamba);
  EXPECT_EQ(c->num_hidden_layers, 32);
  EXPECT_EQ(c->AttentionLayerIndices(), (std::vector<int>{9, 18, 27}));
  EXPECT_EQ(c->num_mamba_layers(), 29);
  EXPECT_EQ(c->CountFfns(FfnKind::kMlp), 32);  // every layer: mixer + SwiGLU MLP
  EXPECT_EQ(c->mlp_activation, MlpActivation::kSwiGlu);
  EXPECT_EQ(c->hidden_size, 4096);
  EXPECT_EQ(c->intermediate_size, 14336);
  EXPECT_EQ(c->num_attention_heads, 32);
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_TRUE(c->use_rope);
  EXPECT_EQ(c->rotary_dim(), 64);
  EXPECT_FLOAT_EQ(c->rope_theta, 10000.0f);  // BambaConfig's default; the file names none
  EXPECT_FLOAT_EQ(c->attention_scale(), 1.0f / std::sqrt(128.0f));
  EXPECT_EQ(c->mamba_n_heads, 128);
  EXPECT_EQ(c->mamba_d_head, 64);
  EXPECT_EQ(c->mamba_n_groups, 1);
  EXPECT_EQ(c->mamba_d_state, 128);
  EXPECT_EQ(c->mamba_d_conv, 4);
  EXPECT_EQ(c->mamba_chunk_size, 256);
  EXPECT_EQ(c->d_inner(), 8192);
  EXPECT_TRUE(c->mamba_conv_bias);
  EXPECT_FALSE(c->mamba_proj_bias);
  EXPECT_EQ(c->vocab_size, 128256);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 128000);
  EXPECT_EQ(c->eos_token_id, 128001);
  EXPECT_EQ(c->pad_token_id, 0);
  EXPECT_EQ(c->max_position_embeddings, 262144);  // BambaConfig's default
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c->embedding_multiplier, 1.0f);
  EXPECT_FLOAT_EQ(c->residual_multiplier, 1.0f);
  EXPECT_FLOAT_EQ(c->logits_scaling, 1.0f);
  EXPECT_EQ(c->CountFfns(FfnKind::kMoe), 0);
}

// nvidia/Nemotron-H-56B-Base-8K (Nemotron-H paper, arXiv 2504.03624): 118
// layers = 54 Mamba2 + 10 attention + 54 FFN, hidden 8192, FFN 32768 (relu²),
// 64 query / 8 KV heads of 128 (named attention_head_dim in this file), Mamba2
// 256 heads x 64 in 8 groups with state 256, no position embedding.
TEST(RealConfigsTest, NemotronH56BBase8K) {
  auto c = LoadModelConfig(RealConfig("nemotron-h-56b-base-8k"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kNemotronH);
  EXPECT_EQ(c->num_hidden_layers, 118);
  EXPECT_EQ(c->num_mamba_layers(), 54);
  EXPECT_EQ(c->num_attention_layers(), 10);
  EXPECT_EQ(c->CountFfns(FfnKind::kMlp), 54);
  EXPECT_EQ(c->CountFfns(FfnKind::kMoe), 0);
  // "M-M-M-M*-": layer 0 Mamba, 1 MLP, 7 attention; the last layer an MLP.
  EXPECT_EQ(c->layers[0], (LayerSpec{MixerKind::kMamba, FfnKind::kNone}));
  EXPECT_EQ(c->layers[1], (LayerSpec{MixerKind::kNone, FfnKind::kMlp}));
  EXPECT_EQ(c->layers[7], (LayerSpec{MixerKind::kAttention, FfnKind::kNone}));
  EXPECT_EQ(c->layers[117], (LayerSpec{MixerKind::kNone, FfnKind::kMlp}));
  EXPECT_EQ(Where(*c, MixerKind::kAttention, FfnKind::kNone),
            (std::vector<int>{7, 18, 29, 40, 51, 62, 73, 84, 95, 106}));
  EXPECT_EQ(c->hidden_size, 8192);
  EXPECT_EQ(c->intermediate_size, 32768);
  EXPECT_EQ(c->mlp_activation, MlpActivation::kRelu2);
  EXPECT_EQ(c->num_attention_heads, 64);
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_FALSE(c->use_rope);
  EXPECT_FLOAT_EQ(c->attention_scale(), 1.0f / std::sqrt(128.0f));
  EXPECT_EQ(c->mamba_n_heads, 256);
  EXPECT_EQ(c->mamba_d_head, 64);
  EXPECT_EQ(c->mamba_n_groups, 8);
  EXPECT_EQ(c->mamba_d_state, 256);
  EXPECT_EQ(c->mamba_d_conv, 4);
  EXPECT_EQ(c->mamba_chunk_size, 128);
  EXPECT_EQ(c->d_inner(), 16384);
  // transformers clamps dt to (time_step_min, inf); the file's time_step_limit
  // [0.0, Infinity] (Python's JSON) is parsed but not used by nemotron_h.
  EXPECT_FLOAT_EQ(c->time_step_min_limit, 0.001f);
  EXPECT_TRUE(std::isinf(c->time_step_max_limit));
  EXPECT_EQ(c->vocab_size, 131072);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_id, 2);
  EXPECT_EQ(c->pad_token_id, 0);
  EXPECT_EQ(c->max_position_embeddings, 8192);
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
}

// nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16 (model card: 52 layers = 23
// Mamba2 + 23 MoE + 6 attention; 128 routed experts + 1 shared, 6 active;
// hidden 2688; GQA 32 / 2 heads): sigmoid routing with one group,
// routed_scaling_factor 2.5, normalised top-k weights.
TEST(RealConfigsTest, Nemotron3Nano30BA3B) {
  auto c = LoadModelConfig(RealConfig("nemotron-3-nano-30b-a3b-bf16"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kNemotronH);
  EXPECT_EQ(c->num_hidden_layers, 52);
  EXPECT_EQ(c->num_mamba_layers(), 23);
  EXPECT_EQ(c->num_attention_layers(), 6);
  EXPECT_EQ(c->CountFfns(FfnKind::kMoe), 23);
  EXPECT_EQ(c->CountFfns(FfnKind::kMlp), 0);
  // "MEMEM*EMEMEM*...": the first attention layer is layer 5.
  EXPECT_EQ(c->layers[0], (LayerSpec{MixerKind::kMamba, FfnKind::kNone}));
  EXPECT_EQ(c->layers[1], (LayerSpec{MixerKind::kNone, FfnKind::kMoe}));
  EXPECT_EQ(c->layers[5], (LayerSpec{MixerKind::kAttention, FfnKind::kNone}));
  EXPECT_EQ(c->layers[51], (LayerSpec{MixerKind::kNone, FfnKind::kMoe}));
  EXPECT_EQ(c->hidden_size, 2688);
  EXPECT_EQ(c->num_attention_heads, 32);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->head_dim, 128);  // 32 x 128 = 4096 != hidden 2688
  EXPECT_FALSE(c->use_rope);
  EXPECT_EQ(c->mamba_n_heads, 64);
  EXPECT_EQ(c->mamba_d_head, 64);
  EXPECT_EQ(c->mamba_n_groups, 8);
  EXPECT_EQ(c->mamba_d_state, 128);
  EXPECT_EQ(c->mamba_chunk_size, 128);
  EXPECT_EQ(c->d_inner(), 4096);
  EXPECT_EQ(c->num_experts, 128);
  EXPECT_EQ(c->num_experts_per_tok, 6);
  EXPECT_EQ(c->moe_intermediate_size, 1856);
  EXPECT_EQ(c->moe_shared_intermediate_size, 3712);
  EXPECT_EQ(c->moe_router, MoeRouter::kSigmoidGroupTopK);
  EXPECT_EQ(c->moe_n_group, 1);
  EXPECT_EQ(c->moe_topk_group, 1);
  EXPECT_TRUE(c->moe_norm_topk_prob);
  EXPECT_FLOAT_EQ(c->moe_routed_scaling_factor, 2.5f);
  EXPECT_EQ(c->mlp_activation, MlpActivation::kRelu2);
  EXPECT_EQ(c->vocab_size, 131072);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->max_position_embeddings, 262144);
  EXPECT_FLOAT_EQ(c->time_step_min_limit, 0.001f);
}

}  // namespace
}  // namespace hc::model
