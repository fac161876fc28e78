// The GEMM part of kernels_bench: every CPU GEMM path and library on the
// model's shapes, as fractions of the single-core peak / streaming-read
// bandwidth that kernels_bench measures in the same run.
#ifndef HC_TESTS_BENCH_KERNELS_GEMM_BENCH_H_
#define HC_TESTS_BENCH_KERNELS_GEMM_BENCH_H_

#include <ctime>

namespace hc::kernels::bench {

// CPU time of the calling thread in seconds. Every kernels_bench figure is
// timed with it, not wall time: the development machine is shared with other
// builds, and a descheduled thread should not read as a slow kernel (cache and
// memory-bandwidth contention still show).
inline double ThreadSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Registers the GEMM benchmarks (call before benchmark::RunSpecifiedBenchmarks).
void RegisterGemmBenchmarks();

// Prints the comparison of what ran: peak_gflops is the fp32 FMA peak,
// read_gbps the single-core streaming read bandwidth (decode shapes: weight
// bytes per second as a share of it).
void PrintGemmSummary(double peak_gflops, double read_gbps);

}  // namespace hc::kernels::bench

#endif  // HC_TESTS_BENCH_KERNELS_GEMM_BENCH_H_
