// File ledger with fsync=always: 64 concurrent turns (AcquireLease -> Commit
// chains) with group commit (one fdatasync per batch) vs one write and
// fdatasync per commit. Prints turns/s of each and the ratio, measured in one
// run. The directory is on the build tree's file system (not tmpfs, where
// fdatasync is free).
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "router/ledger/file_ledger.h"
#include "tests/bench/router/turn_driver.h"

int main(int argc, char** argv) {
  using namespace hc::router;
  const absl::Duration duration = absl::Seconds(argc > 1 ? std::atoi(argv[1]) : 3);
  constexpr int kConcurrency = 64;
  std::string base = std::filesystem::current_path().string() + "/hc-ledger-bench-XXXXXX";
  if (::mkdtemp(base.data()) == nullptr) return 1;
  double rate[2] = {};
  FileLedgerStats stats[2];
  for (int group = 1; group >= 0; --group) {
    LedgerOptions o;
    o.backend = "file";
    o.dir = base + (group ? "/group" : "/single");
    o.fsync = FsyncPolicy::kAlways;
    FileLedgerOptions fo;
    fo.group_commit = group == 1;
    auto ledger = OpenFileLedger(o, fo);
    if (!ledger.ok()) {
      std::printf("open: %s\n", ledger.status().ToString().c_str());
      return 1;
    }
    bench::TurnDriver driver(**ledger, "c", 256);
    rate[group] = driver.Run(kConcurrency, duration);
    stats[group] = (*ledger)->stats();
  }
  std::filesystem::remove_all(base);
  std::printf(
      "SUMMARY file ledger fsync=always, %d concurrent turns: group commit %.0f turns/s "
      "(%.1f records per fdatasync), one fdatasync per commit %.0f turns/s; ratio %.1fx\n",
      kConcurrency, rate[1],
      static_cast<double>(stats[1].records) / std::max<uint64_t>(1, stats[1].syncs), rate[0],
      rate[1] / std::max(rate[0], 1e-9));
  return 0;
}
