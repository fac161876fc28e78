// The file ledger's on-disk format, shared by replay at open and by the
// background compaction (which rebuilds a snapshot from files, never from the
// live table).
//
// A directory holds:
//   ledger.snap      the snapshot: "HCLSNAP2", u64 seq (the last log record it
//                    includes), then one frame per committed conversation
//                    (with its rounds' usage; "HCLSNAP1" snapshots of earlier
//                    versions, without usage, still load)
//   ledger.log.old   the log segment being compacted (present only between a
//                    rotation and the end of that compaction, or after a crash
//                    in between)
//   ledger.log       the active log segment
//   ledger.snap.tmp  a snapshot being written (a leftover is deleted on open)
// Frames are [u32 length][u32 CRC-32C][payload]. Log records carry strictly
// increasing sequence numbers across segments, so replaying the snapshot,
// then ledger.log.old, then ledger.log and skipping every record with
// seq <= the snapshot's seq is correct after a crash at any point of a
// compaction.
#ifndef HC_ROUTER_LEDGER_LEDGER_FILES_H_
#define HC_ROUTER_LEDGER_LEDGER_FILES_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "router/ledger/file_ledger.h"
#include "router/ledger/file_ops.h"
#include "router/ledger/ledger.h"
#include "router/ledger/ledger_table.h"

namespace hc::router {

inline constexpr char kLogFile[] = "ledger.log";
inline constexpr char kOldLogFile[] = "ledger.log.old";
inline constexpr char kSnapshotFile[] = "ledger.snap";
inline constexpr char kSnapshotTmpFile[] = "ledger.snap.tmp";

// Framed log records (frame included), ready to append.
std::string CommitRecord(uint64_t seq, const std::string& table_key, const CommitRequest& commit,
                         absl::Time now);
std::string DeleteRecord(uint64_t seq, const std::string& table_key);

struct SegmentReplay {
  uint64_t last_seq = 0;     // the highest seq seen (0: none)
  uint64_t valid_bytes = 0;  // bytes up to the end of the last good record
  uint64_t applied = 0;      // records applied (seq > after_seq)
};

// Applies the records of log segment `data` (read from `path`) with
// seq > after_seq to `table`. A torn tail (a bad last frame with no valid
// frame after it: a crash mid-write) ends the segment at valid_bytes; the
// caller truncates it. DATA_LOSS, naming the file and offset, for anything
// else: a bad frame followed by good ones, an undecodable record, a record
// that does not apply.
absl::StatusOr<SegmentReplay> ReplaySegment(std::string_view data, const std::string& path,
                                            uint64_t after_seq, LedgerTable* table);

// Loads snapshot `data` (read from `path`) into `table`; returns its seq.
// DATA_LOSS when it is corrupt.
absl::StatusOr<uint64_t> ReplaySnapshot(std::string_view data, const std::string& path,
                                        LedgerTable* table);

// Writes `table`'s committed entries as a snapshot with `seq` to `path`
// (truncating it) and fsyncs it; streams in 1 MiB pieces. Returns its size.
absl::StatusOr<uint64_t> WriteSnapshot(FileOps& ops, const std::string& path, uint64_t seq,
                                       const LedgerTable& table);

struct CompactionPaths {
  std::string dir, snapshot, snapshot_tmp, old_log;
};

// One background compaction (file_ledger.h): the snapshot plus the old log
// segment become the new snapshot (written to snapshot_tmp, fsynced, renamed,
// the directory fsynced), then the old segment is deleted. Reads files only,
// never the live table. `step` is called after each step; false stops there
// (CANCELLED), leaving the files as a crash at that step would. Returns the
// new snapshot's size.
absl::StatusOr<uint64_t> CompactSegment(FileOps& ops, const CompactionPaths& paths,
                                        const std::function<bool(CompactionStep)>& step);

}  // namespace hc::router

#endif  // HC_ROUTER_LEDGER_LEDGER_FILES_H_
