// The file ledger's on-disk formats across versions (ledger_files.h): a log
// and a snapshot written before the ledger kept round usage still load, with
// that usage unknown, and the current formats keep it.
#include <filesystem>
#include <fstream>
#include <optional>

#include "gtest/gtest.h"
#include "router/ledger/file_ops.h"
#include "router/ledger/ledger.h"
#include "router/ledger/ledger_files.h"
#include "router/ledger/ledger_table.h"
#include "router/ledger/record_codec.h"
#include "tests/unit/router/ledger/ledger_test_util.h"

namespace hc::router {
namespace {

using Usages = std::vector<std::optional<RoundUsage>>;

// [u32 length][u32 CRC-32C][payload], as every version frames records.
std::string Framed(const std::string& payload) {
  std::string out;
  ByteWriter w(&out);
  w.U32(static_cast<uint32_t>(payload.size()));
  w.U32(Crc32c(payload));
  out += payload;
  return out;
}

constexpr uint64_t kActivityMicros = 1'700'000'000'000'000;

void Write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// The version-1 formats, spelled out field by field as the previous version
// wrote them (so a change to the current writer cannot hide a break):
//   snapshot "HCLSNAP1", u64 seq, frames of: key, u64 round, tokens,
//            messages, worker, u64 last activity (µs);
//   log      type 1 (append) / 3 (rewrite): u8 type, u64 seq, key,
//            u64 expected round, [u32 rewrite_from,] tokens, messages, worker,
//            u64 activity (µs).
std::string V1Snapshot(const std::string& key) {
  std::string payload;
  ByteWriter w(&payload);
  w.Bytes(key);
  w.U64(1);
  const std::vector<uint32_t> tokens = {1, 2, 3};
  w.Tokens(tokens);
  const std::vector<LedgerMessage> messages = {{Role::kUser, 0, 2, "u1"},
                                               {Role::kAssistant, 2, 3, "r1"}};
  w.Messages(messages);
  w.Worker(WorkerState{"w", 1, 2, 42});
  w.U64(kActivityMicros);
  std::string out = "HCLSNAP1";
  ByteWriter(&out).U64(1);
  return out + Framed(payload);
}

std::string V1LogRecord(uint8_t type, uint64_t seq, const std::string& key, uint64_t round,
                        std::optional<uint32_t> rewrite_from, std::vector<uint32_t> tokens,
                        std::vector<LedgerMessage> messages) {
  std::string payload;
  ByteWriter w(&payload);
  w.U8(type);
  w.U64(seq);
  w.Bytes(key);
  w.U64(round);
  if (rewrite_from.has_value()) w.U32(*rewrite_from);
  w.Tokens(tokens);
  w.Messages(messages);
  w.Worker(WorkerState{"w", round + 1, 4, 43});
  w.U64(kActivityMicros);
  return Framed(payload);
}

class FileLedgerFormatTest : public ::testing::Test {
 protected:
  LedgerOptions Options() {
    LedgerOptions o;
    o.backend = "file";
    o.dir = dir_.path();
    o.fsync = FsyncPolicy::kNever;
    return o;
  }
  testing::TempDir dir_;
  const LedgerKey key_{"salt", "conv"};
};

TEST_F(FileLedgerFormatTest, ALogAndSnapshotOfThePreviousVersionLoadWithTheirUsageUnknown) {
  const std::string key = EncodeTableKey(key_);
  Write(dir_.path() + "/ledger.snap", V1Snapshot(key));
  Write(dir_.path() + "/ledger.log",
        V1LogRecord(1, 2, key, 1, std::nullopt, {4, 5}, {{Role::kUser, 3, 5, "u2"}}) +
            V1LogRecord(3, 3, key, 2, 5, {6, 7}, {{Role::kAssistant, 5, 7, "r2"}}));
  {
    auto ledger = OpenLedger(Options());
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    auto rec = (*ledger)->Get(key_);
    ASSERT_TRUE(rec.ok()) << rec.status();
    EXPECT_EQ(rec->round, 3u);
    EXPECT_EQ(rec->tokens, (std::vector<uint32_t>{1, 2, 3, 4, 5, 6, 7}));
    ASSERT_EQ(rec->messages.size(), 4u);
    EXPECT_EQ(rec->messages[3].text, "r2");
    EXPECT_EQ(rec->last_activity, absl::FromUnixMicros(kActivityMicros));
    EXPECT_TRUE(rec->usage.empty());
    for (uint64_t r = 1; r <= 3; ++r) EXPECT_EQ(UsageOfRound(*rec, r), std::nullopt) << r;
    // The next round records its usage, after the three unknown ones.
    ASSERT_TRUE((*ledger)->AcquireLease(key_, "h", absl::Seconds(30)).ok());
    CommitRequest c;
    c.expected_round = 3;
    c.appended_tokens = {8};
    c.usage = RoundUsage{8, 7, 1};
    ASSERT_TRUE((*ledger)->Commit(key_, "h", c).ok());
  }
  auto ledger = OpenLedger(Options());
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  auto rec = (*ledger)->Get(key_);
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->round, 4u);
  EXPECT_EQ(rec->usage, (Usages{std::nullopt, std::nullopt, std::nullopt, RoundUsage{8, 7, 1}}));
}

TEST_F(FileLedgerFormatTest, TheSnapshotKeepsEachRoundsUsage) {
  LedgerTable table;
  LedgerTable::Entry known;
  known.round = 3;
  known.tokens = {1, 2, 3};
  known.usage = {RoundUsage{1, 0, 1}, std::nullopt, RoundUsage{3, 2, 1}};
  LedgerTable::Entry none;
  none.round = 2;
  none.tokens = {4};
  table.Put(EncodeTableKey(LedgerKey{"s", "known"}), known);
  table.Put(EncodeTableKey(LedgerKey{"s", "none"}), none);
  const std::string path = dir_.path() + "/ledger.snap";
  ASSERT_TRUE(WriteSnapshot(PosixFileOps(), path, 9, table).ok());
  auto data = PosixFileOps().ReadFile(path);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->substr(0, 8), "HCLSNAP2");
  LedgerTable back;
  auto seq = ReplaySnapshot(*data, path, &back);
  ASSERT_TRUE(seq.ok()) << seq.status();
  EXPECT_EQ(*seq, 9u);
  EXPECT_EQ(back.entries().at(EncodeTableKey(LedgerKey{"s", "known"})).usage, known.usage);
  EXPECT_TRUE(back.entries().at(EncodeTableKey(LedgerKey{"s", "none"})).usage.empty());
}

TEST_F(FileLedgerFormatTest, ASnapshotWithMoreUsagesThanRoundsIsDataLoss) {
  LedgerTable table;
  LedgerTable::Entry e;
  e.round = 1;
  e.usage = {RoundUsage{}, RoundUsage{}};
  table.Put(EncodeTableKey(key_), e);
  const std::string path = dir_.path() + "/ledger.snap";
  ASSERT_TRUE(WriteSnapshot(PosixFileOps(), path, 1, table).ok());
  LedgerTable back;
  EXPECT_EQ(ReplaySnapshot(*PosixFileOps().ReadFile(path), path, &back).status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace hc::router
