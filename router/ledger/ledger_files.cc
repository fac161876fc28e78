#include "router/ledger/ledger_files.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "router/ledger/record_codec.h"

namespace hc::router {
namespace {

constexpr uint8_t kCommitRecord = 1;
constexpr uint8_t kDeleteRecord = 2;
// A commit with CommitRequest::rewrite_from: the commit record's fields with
// the rewrite position (U32) after the expected round. Appends keep type 1,
// so logs written before rewrites existed replay unchanged.
constexpr uint8_t kRewriteRecord = 3;
// Types 1 and 3 followed by the round's usage (record_codec.h), written when
// the commit has one (CommitRequest::usage). Logs of earlier versions hold
// only types 1-3: their rounds replay with the usage unknown.
constexpr uint8_t kCommitUsageRecord = 4;
constexpr uint8_t kRewriteUsageRecord = 5;
bool HasUsage(uint8_t t) { return t == kCommitUsageRecord || t == kRewriteUsageRecord; }
bool IsRewriteType(uint8_t t) { return t == kRewriteRecord || t == kRewriteUsageRecord; }
bool IsCommitType(uint8_t t) { return t == kCommitRecord || t == kRewriteRecord || HasUsage(t); }
// Version 2 adds each conversation's round usage after its last activity;
// version 1 snapshots (earlier versions) still load, with usage unknown.
constexpr std::string_view kSnapshotMagicV1 = "HCLSNAP1";
constexpr std::string_view kSnapshotMagic = "HCLSNAP2";
static_assert(kSnapshotMagicV1.size() == kSnapshotMagic.size());

int64_t ToMicros(absl::Time t) {
  return t == absl::InfinitePast() ? INT64_MIN : absl::ToUnixMicros(t);
}
absl::Time FromMicros(int64_t us) {
  return us == INT64_MIN ? absl::InfinitePast() : absl::FromUnixMicros(us);
}

void Frame(std::string_view payload, std::string* out) {
  ByteWriter w(out);
  w.U32(static_cast<uint32_t>(payload.size()));
  w.U32(Crc32c(payload));
  out->append(payload);
}

// Next framed payload of `data` at *offset; false at the end or at a torn or
// corrupt frame.
bool NextFrame(std::string_view data, size_t* offset, std::string_view* payload) {
  if (data.size() - *offset < 8) return false;
  uint32_t len = 0, crc = 0;
  std::memcpy(&len, data.data() + *offset, 4);
  std::memcpy(&crc, data.data() + *offset + 4, 4);
  if (data.size() - *offset - 8 < len) return false;
  const std::string_view p = data.substr(*offset + 8, len);
  if (Crc32c(p) != crc) return false;
  *payload = p;
  *offset += 8 + len;
  return true;
}

}  // namespace

std::string CommitRecord(uint64_t seq, const std::string& table_key, const CommitRequest& commit,
                         absl::Time now) {
  std::string payload;
  ByteWriter w(&payload);
  const bool rewrite = commit.rewrite_from.has_value();
  const bool usage = commit.usage.has_value();
  w.U8(rewrite ? (usage ? kRewriteUsageRecord : kRewriteRecord)
               : (usage ? kCommitUsageRecord : kCommitRecord));
  w.U64(seq);
  w.Bytes(table_key);
  w.U64(commit.expected_round);
  if (commit.rewrite_from.has_value()) w.U32(*commit.rewrite_from);
  w.Tokens(commit.appended_tokens);
  w.Messages(commit.appended_messages);
  w.Worker(commit.worker);
  w.U64(static_cast<uint64_t>(ToMicros(now)));
  if (usage) w.Usage(commit.usage);
  std::string framed;
  framed.reserve(payload.size() + 8);
  Frame(payload, &framed);
  return framed;
}

std::string DeleteRecord(uint64_t seq, const std::string& table_key) {
  std::string payload;
  ByteWriter w(&payload);
  w.U8(kDeleteRecord);
  w.U64(seq);
  w.Bytes(table_key);
  std::string framed;
  Frame(payload, &framed);
  return framed;
}

namespace {

// Whether a frame with a valid CRC and a decodable record header starts
// anywhere in data[from, end): after a bad frame, that means the bad frame is
// damage in the middle of the log, not a torn tail. Costs O(tail bytes x
// candidate frame length) on this error path only; a torn tail is at most one
// write batch.
bool AnyValidFrameAfter(std::string_view data, size_t from) {
  for (size_t p = from; p + 8 <= data.size(); ++p) {
    size_t offset = p;
    std::string_view payload;
    if (!NextFrame(data, &offset, &payload) || payload.size() < 9) continue;
    ByteReader r(payload);
    uint8_t type = 0;
    uint64_t seq = 0;
    std::string k;
    if (r.U8(&type) && (IsCommitType(type) || type == kDeleteRecord) && r.U64(&seq) &&
        r.Bytes(&k)) {
      return true;
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<SegmentReplay> ReplaySegment(std::string_view data, const std::string& path,
                                            uint64_t after_seq, LedgerTable* table) {
  SegmentReplay out;
  size_t offset = 0;
  std::string_view payload;
  const auto data_loss = [&](size_t at, const std::string& what) {
    return absl::DataLossError(absl::StrCat(
        "ledger log ", path, ": ", what, " at offset ", at, " of ", data.size(),
        " bytes; refusing to start rather than drop committed rounds (the file is left as it "
        "is: restore it from a backup, or move it away to start from the snapshot alone)"));
  };
  while (offset < data.size()) {
    const size_t at = offset;
    if (!NextFrame(data, &offset, &payload)) {
      // Only an incomplete last frame (a crash mid-write) may be dropped: a
      // bad frame with a good one anywhere after it is damage.
      uint32_t len = 0;
      if (data.size() - at >= 8) std::memcpy(&len, data.data() + at, 4);
      const bool complete = data.size() - at >= 8 && data.size() - at - 8 >= len;
      const size_t next = complete ? at + 8 + len : at + 1;
      if ((complete && next < data.size()) || AnyValidFrameAfter(data, next)) {
        return data_loss(at, "corrupt record (bad length or CRC) followed by more records");
      }
      HC_LOG(WARNING) << "ledger log " << path << ": dropping a torn tail of " << data.size() - at
                      << " bytes at offset " << at;
      break;
    }
    ByteReader r(payload);
    uint8_t type = 0;
    uint64_t seq = 0;
    std::string k;
    bool ok = r.U8(&type) && r.U64(&seq) && r.Bytes(&k);
    if (ok && IsCommitType(type)) {
      CommitRequest c;
      uint64_t activity = 0;
      uint32_t from = 0;
      ok = r.U64(&c.expected_round) && (!IsRewriteType(type) || r.U32(&from)) &&
           r.Tokens(&c.appended_tokens) && r.Messages(&c.appended_messages) &&
           r.Worker(&c.worker) && r.U64(&activity) &&
           (!HasUsage(type) || (r.Usage(&c.usage) && c.usage.has_value())) && r.done();
      if (IsRewriteType(type)) c.rewrite_from = from;
      if (ok && seq > after_seq) {
        // Holder "" skips the lease check. A round mismatch means the log
        // does not hold what was acknowledged: never skip it silently.
        if (absl::Status s = table->Commit(k, "", c, FromMicros(static_cast<int64_t>(activity)));
            !s.ok()) {
          return data_loss(at, absl::StrCat("record ", seq, " does not apply (", s.message(), ")"));
        }
        ++out.applied;
      }
    } else if (ok && type == kDeleteRecord) {
      ok = r.done();
      if (ok && seq > after_seq) {
        table->Erase(k);
        ++out.applied;
      }
    } else {
      ok = false;
    }
    if (!ok) return data_loss(at, "undecodable record with a valid CRC");
    out.last_seq = std::max(out.last_seq, seq);
    out.valid_bytes = offset;
  }
  return out;
}

absl::StatusOr<uint64_t> ReplaySnapshot(std::string_view data, const std::string& path,
                                        LedgerTable* table) {
  const auto corrupt = [&] { return absl::DataLossError(absl::StrCat("corrupt snapshot ", path)); };
  if (data.size() < kSnapshotMagic.size() + 8) return corrupt();
  const bool v1 = data.compare(0, kSnapshotMagicV1.size(), kSnapshotMagicV1) == 0;
  if (!v1 && data.compare(0, kSnapshotMagic.size(), kSnapshotMagic) != 0) return corrupt();
  uint64_t seq = 0;
  std::memcpy(&seq, data.data() + kSnapshotMagic.size(), 8);
  size_t offset = kSnapshotMagic.size() + 8;
  std::string_view payload;
  while (NextFrame(data, &offset, &payload)) {
    ByteReader r(payload);
    std::string k;
    LedgerTable::Entry e;
    uint64_t activity = 0;
    if (!r.Bytes(&k) || !r.U64(&e.round) || !r.Tokens(&e.tokens) || !r.Messages(&e.messages) ||
        !r.Worker(&e.worker) || !r.U64(&activity) || (!v1 && !r.Usages(&e.usage)) ||
        e.usage.size() > e.round || !r.done()) {
      return corrupt();
    }
    e.last_activity = FromMicros(static_cast<int64_t>(activity));
    table->Put(k, std::move(e));
  }
  if (offset != data.size()) return corrupt();
  return seq;
}

absl::StatusOr<uint64_t> WriteSnapshot(FileOps& ops, const std::string& path, uint64_t seq,
                                       const LedgerTable& table) {
  absl::StatusOr<int> fd = ops.OpenTruncated(path);
  if (!fd.ok()) return fd.status();
  std::string buf(kSnapshotMagic);
  ByteWriter hw(&buf);
  hw.U64(seq);
  uint64_t written = 0;
  absl::Status s;
  std::string payload;
  for (const auto& [k, e] : table.entries()) {
    if (e.round == 0) continue;
    payload.clear();
    ByteWriter w(&payload);
    w.Bytes(k);
    w.U64(e.round);
    w.Tokens(e.tokens);
    w.Messages(e.messages);
    w.Worker(e.worker);
    w.U64(static_cast<uint64_t>(ToMicros(e.last_activity)));
    w.Usages(e.usage);
    Frame(payload, &buf);
    if (buf.size() >= (1 << 20)) {
      if (s = ops.WriteAll(*fd, buf, path); !s.ok()) break;
      written += buf.size();
      buf.clear();
    }
  }
  if (s.ok()) s = ops.WriteAll(*fd, buf, path);
  written += buf.size();
  if (s.ok()) s = ops.Sync(*fd, path);
  ops.Close(*fd);
  if (!s.ok()) return s;
  return written;
}

absl::StatusOr<uint64_t> CompactSegment(FileOps& ops, const CompactionPaths& paths,
                                        const std::function<bool(CompactionStep)>& step) {
  const absl::Status stopped = absl::CancelledError("compaction stopped by a test hook");
  if (!step(CompactionStep::kRotated)) return stopped;
  LedgerTable table;
  uint64_t seq = 0;
  if (absl::StatusOr<std::string> snap = ops.ReadFile(paths.snapshot); snap.ok()) {
    HC_ASSIGN_OR_RETURN(seq, ReplaySnapshot(*snap, paths.snapshot, &table));
  } else if (!absl::IsNotFound(snap.status())) {
    return snap.status();
  }
  {
    HC_ASSIGN_OR_RETURN(std::string segment, ops.ReadFile(paths.old_log));
    HC_ASSIGN_OR_RETURN(SegmentReplay replay, ReplaySegment(segment, paths.old_log, seq, &table));
    seq = std::max(seq, replay.last_seq);
  }
  HC_ASSIGN_OR_RETURN(uint64_t size, WriteSnapshot(ops, paths.snapshot_tmp, seq, table));
  if (!step(CompactionStep::kSnapshotWritten)) return stopped;
  HC_RETURN_IF_ERROR(ops.Rename(paths.snapshot_tmp, paths.snapshot));
  // Until the rename is durable the old segment is still needed: a crash
  // could bring the previous snapshot back.
  HC_RETURN_IF_ERROR(ops.SyncDir(paths.dir));
  if (!step(CompactionStep::kSnapshotInstalled)) return stopped;
  HC_RETURN_IF_ERROR(ops.Unlink(paths.old_log));
  if (absl::Status s = ops.SyncDir(paths.dir); !s.ok()) {
    // Harmless: a resurrected ledger.log.old replays as already included.
    HC_LOG(WARNING) << "ledger: " << s.ToString();
  }
  if (!step(CompactionStep::kDone)) return stopped;
  return size;
}

}  // namespace hc::router
