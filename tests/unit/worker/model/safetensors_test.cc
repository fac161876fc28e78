#include "worker/model/safetensors.h"

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/model/half.h"

namespace hc::model {
namespace {

namespace fs = std::filesystem;
using runtime::DType;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string FreshDir(const std::string& name) {
  const fs::path p = fs::path(::testing::TempDir()) /
                     ("safetensors_test_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// Deterministic values per tensor, exactly representable in bf16 and f16.
std::vector<float> Values(const TensorSpec& spec) {
  std::vector<float> v(static_cast<size_t>(spec.NumElements()));
  std::mt19937 rng(static_cast<uint32_t>(std::hash<std::string>()(spec.name)));
  for (float& x : v) x = static_cast<float>(static_cast<int>(rng() % 512) - 256) / 64.0f;
  return v;
}

absl::Status Fill(const TensorSpec& spec, char* dst) {
  const std::vector<float> v = Values(spec);
  for (size_t i = 0; i < v.size(); ++i) {
    if (spec.dtype == DType::kF32) {
      std::memcpy(dst + 4 * i, &v[i], 4);
    } else {
      const uint16_t h = spec.dtype == DType::kBF16 ? F32ToBf16(v[i]) : F32ToF16(v[i]);
      std::memcpy(dst + 2 * i, &h, 2);
    }
  }
  return absl::OkStatus();
}

const std::vector<TensorSpec> kSpecs = {
    {"model.embed_tokens.weight", DType::kBF16, {7, 5}},
    {"model.layers.0.mamba.A_log", DType::kF32, {3}},
    {"model.layers.0.mamba.conv1d.weight", DType::kF16, {6, 1, 4}},
    {"lm_head.weight", DType::kF32, {7, 5}},
    {"scalar", DType::kF32, {}},
};

// Writes a raw safetensors file: header length, header text, data.
void WriteRaw(const std::string& path, const std::string& header, const std::string& data,
              uint64_t header_len_override = 0) {
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = header_len_override ? header_len_override : header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xFF));
  out << header << data;
}

TEST(SafetensorsTest, WriterReaderRoundTripConvertsToF32) {
  const std::string dir = FreshDir("roundtrip");
  const std::string path = dir + "/model.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, kSpecs, Fill, {{"format", "pt"}}).ok());
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->metadata().at("format"), "pt");
  EXPECT_EQ((*ckpt)->Names().size(), kSpecs.size());
  for (const TensorSpec& spec : kSpecs) {
    auto view = (*ckpt)->Get(spec.name);
    ASSERT_TRUE(view.ok()) << view.status();
    EXPECT_EQ(view->dtype, spec.dtype);
    EXPECT_EQ(view->shape, spec.shape);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(view->data) % runtime::DTypeSize(spec.dtype), 0u)
        << spec.name << " is misaligned";
    auto values = LoadF32(**ckpt, spec.name, spec.shape);
    ASSERT_TRUE(values.ok()) << values.status();
    EXPECT_EQ(*values, Values(spec)) << spec.name;
  }
}

TEST(SafetensorsTest, ShardedCheckpointThroughIndex) {
  const std::string dir = FreshDir("sharded");
  auto shards = WriteShardedSafetensors(dir, kSpecs, Fill, /*max_shard_bytes=*/100);
  ASSERT_TRUE(shards.ok()) << shards.status();
  EXPECT_GE(shards->size(), 3u);
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors.index.json"));
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->files().size(), shards->size());
  for (const TensorSpec& spec : kSpecs) {
    auto values = LoadF32(**ckpt, spec.name, spec.shape);
    ASSERT_TRUE(values.ok()) << values.status();
    EXPECT_EQ(*values, Values(spec));
  }
}

TEST(SafetensorsTest, IndexNamingATensorItsShardLacksIsAnError) {
  const std::string dir = FreshDir("badindex");
  auto shards = WriteShardedSafetensors(dir, kSpecs, Fill, 100);
  ASSERT_TRUE(shards.ok());
  {
    // lm_head.weight is not in the first shard.
    std::ofstream idx(dir + "/model.safetensors.index.json", std::ios::trunc);
    idx << R"({"metadata": {}, "weight_map": {"lm_head.weight": ")" << shards->front() << R"("}})";
  }
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(), HasSubstr("lm_head.weight"));
}

TEST(SafetensorsTest, MissingShardIsNamed) {
  const std::string dir = FreshDir("missingshard");
  auto shards = WriteShardedSafetensors(dir, kSpecs, Fill, 100);
  ASSERT_TRUE(shards.ok());
  fs::remove(dir + "/" + shards->back());
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(), HasSubstr(shards->back()));
}

TEST(SafetensorsTest, TruncatedFileNamesTheTensor) {
  const std::string dir = FreshDir("truncated");
  const std::string path = dir + "/model.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, kSpecs, Fill).ok());
  fs::resize_file(path, fs::file_size(path) - 3);
  auto ckpt = SafetensorsCheckpoint::Open(path);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kDataLoss);
  // The last tensor in the file (F16 tensors are written last) is cut short.
  EXPECT_THAT(ckpt.status().message(),
              AllOf(HasSubstr("truncated"), HasSubstr("model.layers.0.mamba.conv1d.weight"),
                    HasSubstr(path)));

  fs::resize_file(path, 5);
  auto tiny = SafetensorsCheckpoint::Open(path);
  EXPECT_EQ(tiny.status().code(), absl::StatusCode::kDataLoss);
}

TEST(SafetensorsTest, BadHeaderLengthAndBadJson) {
  const std::string dir = FreshDir("badheader");
  const std::string path = dir + "/a.safetensors";
  WriteRaw(path, R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
           std::string(4, '\0'), /*header_len_override=*/1ull << 40);
  auto huge = SafetensorsCheckpoint::Open(path);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(huge.status().message(), HasSubstr("bad header length"));

  WriteRaw(path, R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})",
           std::string(4, '\0'));
  auto bad_json = SafetensorsCheckpoint::Open(path);
  EXPECT_EQ(bad_json.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_json.status().message(), AllOf(HasSubstr("bad header"), HasSubstr(path)));
}

TEST(SafetensorsTest, UnknownAndUnsupportedDTypesNameTheTensor) {
  const std::string dir = FreshDir("dtype");
  const std::string path = dir + "/a.safetensors";
  WriteRaw(path, R"({"blk.weird": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 4]}})",
           std::string(4, '\0'));
  auto unknown = SafetensorsCheckpoint::Open(path);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(),
              AllOf(HasSubstr("unknown dtype"), HasSubstr("Q7"), HasSubstr("blk.weird")));

  WriteRaw(path, R"({"position_ids": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}})",
           std::string(8, '\0'));
  auto i64 = SafetensorsCheckpoint::Open(path);
  EXPECT_EQ(i64.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(i64.status().message(), AllOf(HasSubstr("I64"), HasSubstr("position_ids")));
}

TEST(SafetensorsTest, OffsetsDisagreeingWithShapeOrOverlappingAreErrors) {
  const std::string dir = FreshDir("offsets");
  const std::string path = dir + "/a.safetensors";
  WriteRaw(path, R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})",
           std::string(8, '\0'));
  auto mismatch = SafetensorsCheckpoint::Open(path);
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mismatch.status().message(), AllOf(HasSubstr("'w'"), HasSubstr("[3]")));

  WriteRaw(path,
           R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
           R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
           std::string(12, '\0'));
  auto overlap = SafetensorsCheckpoint::Open(path);
  EXPECT_EQ(overlap.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(overlap.status().message(), HasSubstr("overlap"));
}

TEST(SafetensorsTest, LoadF32ReportsWrongShapeAndMissingTensor) {
  const std::string dir = FreshDir("shape");
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", kSpecs, Fill).ok());
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok());
  auto wrong = LoadF32(**ckpt, "lm_head.weight", {5, 7});
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(),
              AllOf(HasSubstr("lm_head.weight"), HasSubstr("[5, 7]"), HasSubstr("[7, 5]")));
  auto missing = LoadF32(**ckpt, "model.layers.9.mamba.D", {3});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("model.layers.9.mamba.D"));
  EXPECT_FALSE((*ckpt)->Has("model.layers.9.mamba.D"));
  EXPECT_TRUE((*ckpt)->Has("lm_head.weight"));
}

TEST(SafetensorsTest, DirectoryWithoutCheckpointIsNotFound) {
  const std::string dir = FreshDir("empty");
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(), HasSubstr(dir));
}

TEST(SafetensorsTest, InMemorySourceServesLoadF32) {
  InMemoryTensorSource src;
  src.AddF32("w", {2, 2}, {1, 2, 3, 4});
  const uint16_t h[2] = {F32ToBf16(0.5f), F32ToBf16(-2.0f)};
  src.Add("b", DType::kBF16, {2}, std::string(reinterpret_cast<const char*>(h), 4));
  EXPECT_EQ(*LoadF32(src, "w", {2, 2}), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(*LoadF32(src, "b", {2}), (std::vector<float>{0.5f, -2.0f}));
  EXPECT_EQ(src.Names(), (std::vector<std::string>{"b", "w"}));
}

TEST(SafetensorsTest, CorruptedHeadersFailCleanly) {
  const std::string dir = FreshDir("corrupt");
  const std::string path = dir + "/model.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, kSpecs, Fill).ok());
  std::ifstream in(path, std::ios::binary);
  const std::string good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(good[i]);
  std::mt19937_64 rng(21);
  const char kBytes[] = "{}[]\":,0123456789-FBI ";
  const std::string bad_path = dir + "/bad.safetensors";
  int failures = 0;
  for (int i = 0; i < 300; ++i) {
    std::string doc = good;
    doc[8 + rng() % header_len] = kBytes[rng() % (sizeof(kBytes) - 1)];
    {
      std::ofstream out(bad_path, std::ios::binary | std::ios::trunc);
      out << doc;
    }
    auto ckpt = SafetensorsCheckpoint::Open(bad_path);  // must return, never abort
    if (!ckpt.ok()) {
      ++failures;
      EXPECT_THAT(ckpt.status().message(), HasSubstr(bad_path));
      continue;
    }
    for (const std::string& name : (*ckpt)->Names()) {
      auto view = (*ckpt)->Get(name);
      ASSERT_TRUE(view.ok());
      auto values = LoadF32(**ckpt, name, view->shape);
      EXPECT_TRUE(values.ok()) << values.status();
    }
  }
  EXPECT_GT(failures, 0);
}

TEST(HalfTest, F16RoundTripsEveryFiniteValue) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const uint16_t h = static_cast<uint16_t>(bits);
    const float f = F16ToF32(h);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(f))));
      continue;
    }
    EXPECT_EQ(F32ToF16(f), h) << "bits " << bits;
  }
  EXPECT_EQ(F16ToF32(0x3C00), 1.0f);
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));         // smallest subnormal
  EXPECT_EQ(F32ToF16(65520.0f), 0x7C00);                      // rounds to +inf
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie to even
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -26)), 0x0000);
}

TEST(HalfTest, Bf16RoundsToNearestEven) {
  for (uint32_t bits = 0; bits < 0x10000; bits += 7) {
    const float f = Bf16ToF32(static_cast<uint16_t>(bits));
    if (!std::isnan(f)) {
      EXPECT_EQ(F32ToBf16(f), bits);
    }
  }
  EXPECT_EQ(F32ToBf16(1.0f + std::ldexp(1.0f, -8)), F32ToBf16(1.0f));  // tie -> even
  EXPECT_EQ(Bf16ToF32(F32ToBf16(1.0f + 3 * std::ldexp(1.0f, -9))), 1.0f + std::ldexp(1.0f, -7));
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(std::nanf("")))));
}

}  // namespace
}  // namespace hc::model
