#include "worker/model/synthetic_checkpoint.h"

#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/text/chat_template.h"
#include "common/text/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/model/model_config_io.h"
#include "worker/model/model_tensors.h"
#include "worker/model/safetensors.h"

namespace hc::model {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string FreshDir(const std::string& name) {
  const fs::path p =
      fs::path(::testing::TempDir()) / ("synthetic_test_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  return p.string();
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uintmax_t DirBytes(const std::string& dir) {
  uintmax_t total = 0;
  for (const auto& e : fs::directory_iterator(dir)) total += fs::file_size(e.path());
  return total;
}

class TinyCheckpointTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(FreshDir("tiny"));
    ASSERT_TRUE(WriteSyntheticCheckpoint("tiny", *dir_).ok());
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  static std::string* dir_;
};
std::string* TinyCheckpointTest::dir_ = nullptr;

TEST_F(TinyCheckpointTest, WritesTheHuggingFaceFiles) {
  for (const char* f : {"config.json", "model.safetensors", "generation_config.json",
                        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}) {
    EXPECT_TRUE(fs::exists(fs::path(*dir_) / f)) << f;
  }
  EXPECT_LT(DirBytes(*dir_), 5u << 20);
}

TEST_F(TinyCheckpointTest, ConfigIsAHybridWithOneGroup) {
  auto c = LoadModelConfig(*dir_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_GE(c->num_mamba_layers(), 2);
  EXPECT_GE(c->num_attention_layers(), 1);
  EXPECT_EQ(c->mamba_n_groups, 1);
  EXPECT_FLOAT_EQ(c->partial_rotary_factor, 0.5f);
  // Chunked prefill must cross chunk boundaries in short tests.
  EXPECT_LE(c->mamba_chunk_size, 32);
  EXPECT_GE(c->vocab_size, 512);
  EXPECT_LE(c->vocab_size, 1024);
  const std::string text = ReadAll(fs::path(*dir_) / "config.json");
  EXPECT_THAT(text, HasSubstr("\"model_type\": \"bamba\""));
  EXPECT_THAT(text, HasSubstr("\"BambaForCausalLM\""));
}

TEST_F(TinyCheckpointTest, EveryExpectedTensorLoadsWithItsShape) {
  auto c = LoadModelConfig(*dir_);
  ASSERT_TRUE(c.ok());
  auto ckpt = SafetensorsCheckpoint::Open(*dir_);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const auto specs = ModelTensorSpecs(*c);
  EXPECT_EQ((*ckpt)->Names().size(), specs.size());
  for (const TensorSpec& spec : specs) {
    auto v = LoadF32(**ckpt, spec.name, spec.shape);
    ASSERT_TRUE(v.ok()) << v.status();
    for (float x : *v) ASSERT_TRUE(std::isfinite(x)) << spec.name;
  }
  EXPECT_TRUE((*ckpt)->Has("model.layers.2.self_attn.q_proj.weight"));
  EXPECT_TRUE((*ckpt)->Has("model.layers.0.mamba.A_log"));
  EXPECT_TRUE((*ckpt)->Has("lm_head.weight"));
}

TEST_F(TinyCheckpointTest, MambaParametersAreInTheirStableRanges) {
  auto ckpt = SafetensorsCheckpoint::Open(*dir_);
  ASSERT_TRUE(ckpt.ok());
  auto a_log = LoadF32(**ckpt, "model.layers.0.mamba.A_log", {4});
  auto dt_bias = LoadF32(**ckpt, "model.layers.0.mamba.dt_bias", {4});
  ASSERT_TRUE(a_log.ok() && dt_bias.ok());
  for (float a : *a_log) {
    EXPECT_GE(std::exp(a), 1.0f - 1e-5f);
    EXPECT_LE(std::exp(a), 16.0f + 1e-4f);
  }
  for (float b : *dt_bias) {
    const float dt = std::log1p(std::exp(b));  // softplus
    EXPECT_GE(dt, 0.001f * 0.999f);
    EXPECT_LE(dt, 0.1f * 1.001f);
  }
  // Projections are ~N(0, 1/fan_in): check the empirical std.
  auto w = LoadF32(**ckpt, "model.layers.0.mamba.in_proj.weight", {292, 64});
  ASSERT_TRUE(w.ok()) << w.status();
  double sq = 0;
  for (float x : *w) sq += x * x;
  EXPECT_NEAR(std::sqrt(sq / w->size()), 1.0 / 8.0, 0.01);
}

TEST_F(TinyCheckpointTest, TokenizerAndTemplateMatchTheConfig) {
  auto c = LoadModelConfig(*dir_);
  ASSERT_TRUE(c.ok());
  auto tok = Tokenizer::FromFile(*dir_ + "/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), c->vocab_size);
  EXPECT_EQ((*tok)->TokenToId("<|end_of_text|>"), c->eos_token_id);
  EXPECT_EQ((*tok)->TokenToId("<|pad|>"), c->pad_token_id);
  // Common words of the corpus are single tokens.
  for (const char* w : {" the", " conversation", " and"}) {
    EXPECT_EQ((*tok)->Encode(w).size(), 1u) << w;
  }
  auto tmpl = ChatTemplate::FromModelDir(*dir_);
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  EXPECT_EQ(tmpl->name(), "granite");
  const std::string prompt = tmpl->RenderText({{"user", "Hello there!"}}, true).value();
  const auto ids = (*tok)->Encode(prompt);
  EXPECT_EQ(ids.front(), *(*tok)->TokenToId("<|start_of_role|>"));
  EXPECT_EQ((*tok)->Decode(ids), prompt);
}

TEST_F(TinyCheckpointTest, GenerationIsDeterministicAndShardingPreservesTensors) {
  const std::string again = FreshDir("tiny_again");
  ASSERT_TRUE(WriteSyntheticCheckpoint("tiny", again).ok());
  for (const auto& e : fs::directory_iterator(*dir_)) {
    EXPECT_EQ(ReadAll(e.path()), ReadAll(fs::path(again) / e.path().filename()))
        << e.path().filename();
  }
  const std::string sharded = FreshDir("tiny_sharded");
  ASSERT_TRUE(WriteSyntheticCheckpoint("tiny", sharded, {.max_shard_bytes = 256 << 10}).ok());
  EXPECT_FALSE(fs::exists(fs::path(sharded) / "model.safetensors"));
  auto a = SafetensorsCheckpoint::Open(*dir_);
  auto b = SafetensorsCheckpoint::Open(sharded);
  ASSERT_TRUE(a.ok() && b.ok()) << b.status();
  EXPECT_GT((*b)->files().size(), 1u);
  ASSERT_EQ((*a)->Names(), (*b)->Names());
  for (const std::string& name : (*a)->Names()) {
    const TensorView va = *(*a)->Get(name), vb = *(*b)->Get(name);
    ASSERT_EQ(va.num_bytes, vb.num_bytes);
    EXPECT_EQ(std::memcmp(va.data, vb.data, va.num_bytes), 0) << name;
  }
  fs::remove_all(again);
  fs::remove_all(sharded);
}

TEST(SyntheticPresetTest, GranitePresetsShipGraniteFourHsOwnChatTemplate) {
  const std::string dir = FreshDir("granite-tiny");
  ASSERT_TRUE(WriteSyntheticCheckpoint("granite-tiny", dir).ok());
  auto tmpl = ChatTemplate::FromModelDir(dir);
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  EXPECT_EQ(tmpl->name(), "granite-4.0-h");
  // The real template's default system prompt: the synthetic special tokens are the ones it
  // writes, so the prompt tokenizes with them.
  const std::string prompt = tmpl->RenderText({{"user", "Hello there!"}}, true).value();
  EXPECT_THAT(prompt, HasSubstr("<|start_of_role|>system<|end_of_role|>You are a helpful"));
  auto tok = Tokenizer::FromFile(dir + "/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode(prompt).front(), *(*tok)->TokenToId("<|start_of_role|>"));
  fs::remove_all(dir);
}

TEST(SyntheticPresetTest, SmallHasFiftyToHundredMillionParameters) {
  auto c = SyntheticModelConfig("small");
  ASSERT_TRUE(c.ok()) << c.status();
  const int64_t params = CountParameters(ModelTensorSpecs(*c));
  EXPECT_GE(params, 50'000'000);
  EXPECT_LE(params, 100'000'000);
  EXPECT_GE(c->vocab_size, 4096);
  EXPECT_EQ(c->mamba_n_groups, 1);
  EXPECT_TRUE(ValidateModelConfig(*c).ok());
}

// nemotron-nano-tiny: nemotron-tiny's model with NVIDIA-Nemotron-Nano-v2's
// chat format, byte for byte the real template, its special tokens single
// tokens, and <SPECIAL_12> ending a turn for the model and the template.
TEST(SyntheticPresetTest, NemotronNanoShipsTheRealTemplateAndItsSpecialTokens) {
  const std::string dir = FreshDir("nemotron_nano");
  ASSERT_TRUE(WriteSyntheticCheckpoint("nemotron-nano-tiny", dir).ok());
  auto c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, SyntheticModelConfig("nemotron-tiny")->architecture);
  auto tok = Tokenizer::FromFile(dir + "/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), c->vocab_size);
  EXPECT_EQ((*tok)->TokenToId("<SPECIAL_12>"), c->eos_token_id);
  for (const char* s : {"<SPECIAL_10>", "<SPECIAL_11>", "<SPECIAL_12>"}) {
    ASSERT_TRUE((*tok)->TokenToId(s).has_value()) << s;
    EXPECT_TRUE((*tok)->IsSpecial(*(*tok)->TokenToId(s))) << s;
  }
  auto tmpl = ChatTemplate::FromModelDir(dir);
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  EXPECT_EQ(tmpl->end_of_turn(), "<SPECIAL_12>");
  EXPECT_EQ(tmpl->source(), ReadAll(fs::path(HC_CHAT_TEMPLATES_DIR) / "nemotron-nano-v2.jinja"));
  EXPECT_EQ(tmpl->RenderText({{"user", "Hi"}}, true).value(),
            "<SPECIAL_10>System\n\n\n<SPECIAL_11>User\nHi\n<SPECIAL_11>Assistant\n<think>\n\n");
  fs::remove_all(dir);
}

// bamba-qwen3-tiny: tiny's model with Qwen3's chat format, byte for byte the
// real template, <|im_start|> and <|im_end|> single special tokens, and
// <|im_end|> ending a turn for the model and the template.
TEST(SyntheticPresetTest, BambaQwen3ShipsTheRealTemplateAndItsSpecialTokens) {
  const std::string dir = FreshDir("bamba_qwen3");
  ASSERT_TRUE(WriteSyntheticCheckpoint("bamba-qwen3-tiny", dir).ok());
  auto c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kBamba);
  EXPECT_EQ(c->num_hidden_layers, SyntheticModelConfig("tiny")->num_hidden_layers);
  auto tok = Tokenizer::FromFile(dir + "/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), c->vocab_size);
  EXPECT_EQ((*tok)->TokenToId("<|im_end|>"), c->eos_token_id);
  for (const char* s : {"<|im_start|>", "<|im_end|>"}) {
    ASSERT_TRUE((*tok)->TokenToId(s).has_value()) << s;
    EXPECT_TRUE((*tok)->IsSpecial(*(*tok)->TokenToId(s))) << s;
  }
  auto tmpl = ChatTemplate::FromModelDir(dir);
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  EXPECT_EQ(tmpl->name(), "qwen3");
  EXPECT_EQ(tmpl->end_of_turn(), "<|im_end|>");
  EXPECT_EQ(tmpl->source(), ReadAll(fs::path(HC_CHAT_TEMPLATES_DIR) / "qwen3.jinja"));
  EXPECT_EQ(tmpl->RenderText({{"user", "Hi"}}, true).value(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  fs::remove_all(dir);
}

// model_bench's presets: real-model-shaped and of comparable size.
TEST(SyntheticPresetTest, MoeSmallPresetsAreRealShapedAndComparableToSmall) {
  auto granite = SyntheticModelConfig("granite-moe-small");
  ASSERT_TRUE(granite.ok()) << granite.status();
  EXPECT_EQ(granite->architecture, Architecture::kGraniteMoeHybrid);
  EXPECT_FALSE(granite->use_rope);  // Granite-4.0-H is NoPE
  EXPECT_EQ(granite->num_experts, 8);
  EXPECT_GT(granite->moe_shared_intermediate_size, 0);
  for (const LayerSpec& l : granite->layers) EXPECT_EQ(l.ffn, FfnKind::kMoe);
  auto nemotron = SyntheticModelConfig("nemotron-moe-small");
  ASSERT_TRUE(nemotron.ok()) << nemotron.status();
  EXPECT_EQ(nemotron->architecture, Architecture::kNemotronH);
  EXPECT_GT(nemotron->mamba_n_groups, 1);
  int blocks[3] = {};  // M, *, E
  for (const LayerSpec& l : nemotron->layers) {
    ++blocks[l.mixer == MixerKind::kMamba       ? 0
             : l.mixer == MixerKind::kAttention ? 1
             : l.ffn == FfnKind::kMoe           ? 2
                                                : 3];
  }
  EXPECT_EQ(blocks[0], 6);
  EXPECT_EQ(blocks[1], 2);
  EXPECT_EQ(blocks[2], 6);
  for (const ModelConfig* c : {&*granite, &*nemotron}) {
    EXPECT_TRUE(ValidateModelConfig(*c).ok());
    EXPECT_EQ(c->hidden_size, SyntheticModelConfig("small")->hidden_size);
    const int64_t params = CountParameters(ModelTensorSpecs(*c));
    EXPECT_GE(params, 60'000'000);
    EXPECT_LE(params, 110'000'000);
  }
}

TEST(SyntheticPresetTest, UnknownPresetIsRejected) {
  auto p = GetSyntheticPreset("huge");
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("huge"));
}

TEST(ResolveModelPathTest, GeneratesOnceIntoTheCacheAndPassesDirectoriesThrough) {
  const std::string cache = FreshDir("cache");
  ASSERT_EQ(setenv("HC_CACHE_DIR", cache.c_str(), 1), 0);
  auto first = ResolveModelPath("synthetic:tiny");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(fs::path(*first).parent_path(), fs::path(cache));
  EXPECT_TRUE(fs::exists(fs::path(*first) / "model.safetensors"));
  const auto stamp = fs::last_write_time(fs::path(*first) / "model.safetensors");
  // No temporary directories are left behind.
  int entries = 0;
  for (const auto& e : fs::directory_iterator(cache)) {
    ++entries;
    EXPECT_EQ(e.path().filename().string().rfind(".tmp-", 0), std::string::npos);
  }
  EXPECT_EQ(entries, 1);

  auto second = ResolveModelPath("synthetic:tiny");
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, *first);
  EXPECT_EQ(fs::last_write_time(fs::path(*first) / "model.safetensors"), stamp);

  auto through = ResolveModelPath(*first);
  ASSERT_TRUE(through.ok());
  EXPECT_EQ(*through, *first);
  EXPECT_EQ(ResolveModelPath(cache + "/nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ResolveModelPath("synthetic:huge").status().code(), absl::StatusCode::kInvalidArgument);
  unsetenv("HC_CACHE_DIR");
  fs::remove_all(cache);
}

}  // namespace
}  // namespace hc::model
