// Opt-in per-family kernel timing: a KernelSet decorator that adds the wall
// time of every kernel call to a KernelProfile.
//
// Zero cost when off: nothing is wrapped unless a backend asks for it
// (CpuBackend does when $HC_KERNEL_PROFILE is set, see
// worker/runtime/cpu_backend.cc). With tensor parallelism the ranks' calls all
// add up, so a family's time is summed over ranks (CPU time, not wall time).
#ifndef HC_KERNELS_PROFILED_KERNELS_H_
#define HC_KERNELS_PROFILED_KERNELS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "kernels/kernels.h"

namespace hc::kernels {

enum class KernelFamily {
  kGemm,         // Gemm and GemmBf16
  kAttention,    // PagedAttention
  kKvWrite,      // WriteKv
  kSsdScan,      // SsdChunkScanVarlen
  kSsdUpdate,    // SelectiveStateUpdate
  kConv1d,       // both conv1d entry points
  kNorm,         // RmsNorm, GatedSumSquares, GatedNormApply
  kRope,         // ApplyRope
  kElementwise,  // every ElementwiseKernels method
  kNumFamilies,
};

const char* KernelFamilyName(KernelFamily family);

// Thread-safety: Add, Snapshot and Reset may be called concurrently (relaxed
// atomics: a snapshot taken while calls are running may mix their halves).
class KernelProfile {
 public:
  struct Entry {
    int64_t calls = 0;
    int64_t nanos = 0;
  };
  using Totals = std::array<Entry, static_cast<int>(KernelFamily::kNumFamilies)>;

  void Add(KernelFamily family, int64_t nanos);
  Totals Snapshot() const;
  void Reset();

  // One line per family with calls, milliseconds and share of `wall_nanos`
  // (the caller's wall time around the same calls; "rest" is what the families
  // do not account for, clamped at 0). wall_nanos <= 0: shares of the sum.
  static std::string Format(const Totals& totals, int64_t wall_nanos);

 private:
  std::array<std::atomic<int64_t>, static_cast<int>(KernelFamily::kNumFamilies)> calls_{};
  std::array<std::atomic<int64_t>, static_cast<int>(KernelFamily::kNumFamilies)> nanos_{};
};

// The profile CpuBackend reports into when $HC_KERNEL_PROFILE is set.
KernelProfile& ProcessKernelProfile();

// Returns a set whose families forward to `inner`'s and time each call into
// `profile`, which must outlive the returned set.
KernelSet ProfileKernels(KernelSet inner, KernelProfile* profile);

}  // namespace hc::kernels

#endif  // HC_KERNELS_PROFILED_KERNELS_H_
