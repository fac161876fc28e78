// Kernel benchmarks: the single-core fp32 FMA peak (a register-only FMA loop),
// memcpy and streaming-read bandwidth, measured first in the same run (the
// read bandwidth again at the end: the machine is shared, so the two show how
// much it moved during the run); then every CPU GEMM
// path and GEMM library on the model's shapes against them (gemm_bench.cc:
// own AVX2 / AVX-512 / AVX512-BF16 kernels, OpenBLAS, oneDNN when built; fp32
// and bf16 weights; decode shapes stream the weights from DRAM); plus the
// Mamba2 scan/update, paged attention and the norms at model sizes.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/cpu_kernels_simd.h"
#include "kernels/cpu/x86_simd.h"
#include "kernels/half.h"
#include "tests/bench/kernels/gemm_bench.h"

#ifdef HC_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace hc::kernels {
using bench::ThreadSeconds;
namespace {

// ---- Peak: independent FMA chains, no memory traffic -----------------------
#if defined(__x86_64__)
// 12 independent accumulator chains (more than FMA latency x FMA ports), kept
// in named registers so the loop body is 12 back-to-back FMAs.
#define HC_FMA12(FMA, acc, m, a) \
  acc##0 = FMA(acc##0, m, a);    \
  acc##1 = FMA(acc##1, m, a);    \
  acc##2 = FMA(acc##2, m, a);    \
  acc##3 = FMA(acc##3, m, a);    \
  acc##4 = FMA(acc##4, m, a);    \
  acc##5 = FMA(acc##5, m, a);    \
  acc##6 = FMA(acc##6, m, a);    \
  acc##7 = FMA(acc##7, m, a);    \
  acc##8 = FMA(acc##8, m, a);    \
  acc##9 = FMA(acc##9, m, a);    \
  acc##10 = FMA(acc##10, m, a);  \
  acc##11 = FMA(acc##11, m, a)

#define HC_FMA_LOOP(VEC, SET1, FMA, ADD, LANES)                              \
  VEC r0 = SET1(0.0f), r1 = SET1(0.1f), r2 = SET1(0.2f), r3 = SET1(0.3f);    \
  VEC r4 = SET1(0.4f), r5 = SET1(0.5f), r6 = SET1(0.6f), r7 = SET1(0.7f);    \
  VEC r8 = SET1(0.8f), r9 = SET1(0.9f), r10 = SET1(1.0f), r11 = SET1(1.1f);  \
  const VEC m = SET1(0.9999f), a = SET1(1e-7f);                              \
  for (long it = 0; it < iters; ++it) {                                      \
    HC_FMA12(FMA, r, m, a);                                                  \
  }                                                                          \
  VEC s = ADD(ADD(ADD(r0, r1), ADD(r2, r3)), ADD(ADD(r4, r5), ADD(r6, r7))); \
  s = ADD(s, ADD(ADD(r8, r9), ADD(r10, r11)));                               \
  benchmark::DoNotOptimize(s);                                               \
  return 12.0 * LANES * 2 * iters

__attribute__((target("avx2,fma"))) double FmaLoopAvx2(long iters) {
  HC_FMA_LOOP(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, 8);
}

__attribute__((target("avx512f"))) double FmaLoopAvx512(long iters) {
  HC_FMA_LOOP(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, 16);
}
#endif

double BestGflops(double (*loop)(long)) {
  double best = 0.0;
  for (int rep = 0; rep < 7; ++rep) {
    const double t0 = ThreadSeconds();
    const double flops = loop(20'000'000);
    const double s = ThreadSeconds() - t0;
    best = std::max(best, flops / s * 1e-9);
  }
  return best;
}

// Single-core fp32 peak in GFLOP/s: the best of the vector widths this CPU runs.
double MeasurePeakGflops(std::string* how) {
#if defined(__x86_64__)
  double peak = 0.0;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    peak = BestGflops(FmaLoopAvx2);
    *how = "avx2-fma";
  }
  if (__builtin_cpu_supports("avx512f")) {
    const double p512 = BestGflops(FmaLoopAvx512);
    if (p512 > peak) {
      peak = p512;
      *how = "avx512-fma";
    }
  }
  if (peak > 0.0) return peak;
#endif
  *how = "none";
  return 0.0;
}

double g_peak_gflops = 0.0;
double g_copy_gbps = 0.0;
double g_read_gbps = 0.0;
constexpr size_t kRotateBytes = size_t{256} << 20;  // > any L3

// Single-core memcpy bandwidth (bytes copied per second) over 256 MiB buffers.
double MeasureCopyGbps() {
  std::vector<char> src(kRotateBytes, 1), dst(kRotateBytes, 0);
  double best = 0.0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = ThreadSeconds();
    std::memcpy(dst.data(), src.data(), src.size());
    const double s = ThreadSeconds() - t0;
    benchmark::DoNotOptimize(dst.data());
    best = std::max(best, src.size() / s * 1e-9);
  }
  return best;
}

// Single-core streaming read bandwidth (bytes read per second) over a 256 MiB
// buffer with 64-byte loads, read as one sequential stream and as 8
// interleaved streams (8 equal parts side by side, as a GEMV tile of 8 weight
// rows reads); the larger is what a decode GEMV's weight stream can reach on
// one core, the denominator of the summary's decode column.
#if defined(__x86_64__)
template <int S>
__attribute__((target("avx512f"))) float SumStreamsAvx512(const float* p, size_t n) {
  const size_t part = n / S / 16 * 16;
  __m512 acc[S];
  for (int s = 0; s < S; ++s) acc[s] = _mm512_setzero_ps();
  for (size_t i = 0; i < part; i += 16) {
    for (int s = 0; s < S; ++s) acc[s] = _mm512_add_ps(acc[s], _mm512_load_ps(p + s * part + i));
  }
  __m512 t = acc[0];
  for (int s = 1; s < S; ++s) t = _mm512_add_ps(t, acc[s]);
  return _mm512_reduce_add_ps(t);
}
#endif

template <int S>
float SumStreamsPortable(const float* p, size_t n) {
  const size_t part = n / S;
  float acc[S] = {};
  for (size_t i = 0; i < part; ++i) {
    for (int s = 0; s < S; ++s) acc[s] += p[s * part + i];
  }
  float t = 0.0f;
  for (int s = 0; s < S; ++s) t += acc[s];
  return t;
}

template <int S>
double MeasureReadGbps() {
  static std::vector<float> buf(kRotateBytes / sizeof(float) + 16, 1.0f);
  const float* p = reinterpret_cast<const float*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) &
                                                  ~uintptr_t{63});
  const size_t n = kRotateBytes / sizeof(float);
  double best = 0.0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = ThreadSeconds();
#if defined(__x86_64__)
    const float s =
        __builtin_cpu_supports("avx512f") ? SumStreamsAvx512<S>(p, n) : SumStreamsPortable<S>(p, n);
#else
    const float s = SumStreamsPortable<S>(p, n);
#endif
    const double t = ThreadSeconds() - t0;
    benchmark::DoNotOptimize(s);
    best = std::max(best, kRotateBytes / t * 1e-9);
  }
  return best;
}

// Prints both read figures and returns the larger.
double MeasureAndPrintReadGbps(const char* when) {
  const double one = MeasureReadGbps<1>(), eight = MeasureReadGbps<8>();
  std::printf("single-core streaming read%s: %.1f GB/s one stream, %.1f GB/s 8 streams (256 MiB)\n",
              when, one, eight);
  return std::max(one, eight);
}

// ---- Mamba2 and attention at model sizes ------------------------------------
void BM_SsdChunkScan(benchmark::State& state) {
  const int T = state.range(0), H = 24, P = 64, N = 128, chunk = 256;
  auto k = CreateCpuMamba2Kernels();
  std::vector<float> x(T * H * P, 0.1f), dt(T * H, -1.0f), bc(T * N, 0.05f), y(T * H * P);
  std::vector<float> a_log(H, 0.5f), d(H, 1.0f), bias(H, 0.0f), st(H * P * N, 0.0f);
  const std::vector<int32_t> qsl = {0, T}, slot = {0};
  const SsmParams p{.num_heads = H,
                    .head_dim = P,
                    .state_size = N,
                    .num_groups = 1,
                    .a_log = a_log.data(),
                    .d = d.data(),
                    .dt_bias = bias.data(),
                    .chunk_size = chunk,
                    .state = st.data()};
  const SsmTensors io{.x = {x.data(), H * P},
                      .dt = {dt.data(), H},
                      .b = {bc.data(), N},
                      .c = {bc.data(), N},
                      .y = {y.data(), H * P}};
  for (auto _ : state) k->SsdChunkScanVarlen(p, {1, qsl.data()}, slot.data(), io);
  state.SetItemsProcessed(state.iterations() * T);
}
BENCHMARK(BM_SsdChunkScan)->Arg(64)->Arg(512)->MinTime(0.05);

// One decode step of one Mamba layer for `batch` sequences.
void BM_SelectiveStateUpdate(benchmark::State& state) {
  const int B = state.range(0), H = 24, P = 64, N = 128;
  auto k = CreateCpuMamba2Kernels();
  std::vector<float> x(B * H * P, 0.1f), dt(B * H, -1.0f), bc(B * N, 0.05f), y(B * H * P);
  std::vector<float> a_log(H, 0.5f), d(H, 1.0f), bias(H, 0.0f), st(B * H * P * N, 0.0f);
  std::vector<int32_t> slots(B);
  for (int b = 0; b < B; ++b) slots[b] = b;
  const SsmParams p{.num_heads = H,
                    .head_dim = P,
                    .state_size = N,
                    .num_groups = 1,
                    .a_log = a_log.data(),
                    .d = d.data(),
                    .dt_bias = bias.data(),
                    .chunk_size = 256,
                    .state = st.data()};
  const SsmTensors io{.x = {x.data(), H * P},
                      .dt = {dt.data(), H},
                      .b = {bc.data(), N},
                      .c = {bc.data(), N},
                      .y = {y.data(), H * P}};
  for (auto _ : state) k->SelectiveStateUpdate(p, B, slots.data(), io);
  state.SetItemsProcessed(state.iterations() * B);
}
BENCHMARK(BM_SelectiveStateUpdate)->Arg(1)->Arg(8)->MinTime(0.05);

void BM_PagedAttentionDecode(benchmark::State& state) {
  const int ctx = state.range(0), hq = 12, hkv = 4, hd = 64, bs = 16;
  const int blocks = (ctx + bs - 1) / bs;
  auto k = CreateCpuAttentionKernels();
  std::vector<float> kc(blocks * bs * hkv * hd, 0.01f), vc(kc.size(), 0.02f);
  std::vector<float> q(hq * hd, 0.1f), out(hq * hd);
  std::vector<int32_t> table(blocks);
  for (int i = 0; i < blocks; ++i) table[i] = i;
  const std::vector<int32_t> qsl = {0, 1}, computed = {ctx - 1};
  for (auto _ : state) {
    k->PagedAttention(
        {.num_q_heads = hq,
         .scale = 0.125f,
         .q = {q.data(), hq * hd},
         .out = {out.data(), hq * hd}},
        {.seqs = {1, qsl.data()},
         .num_computed_tokens = computed.data(),
         .block_tables = table.data(),
         .max_blocks_per_seq = blocks},
        {.k = kc.data(), .v = vc.data(), .block_size = bs, .num_kv_heads = hkv, .head_dim = hd});
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PagedAttentionDecode)->Arg(2048)->MinTime(0.05);

// ---- Norms at model sizes: 512 tokens (a prefill chunk) --------------------
// Arg: lanes (16 AVX-512, 8 AVX2, 4 portable; a width the CPU lacks falls back).
simd::SimdWidth WidthOfLanes(int lanes) {
  return lanes == 16 ? simd::SimdWidth::kAvx512
                     : (lanes == 8 ? simd::SimdWidth::kAvx2 : simd::SimdWidth::kPortable);
}

void BM_RmsNorm(benchmark::State& state) {
  const int T = 512, D = 768;
  auto norm = CreateCpuNormKernels(WidthOfLanes(state.range(0)));
  std::vector<float> x(T * D, 0.3f), w(D, 1.1f), out(T * D);
  for (auto _ : state) {
    norm->RmsNorm({.num_tokens = T,
                   .dim = D,
                   .x = {x.data(), D},
                   .weight = w.data(),
                   .out = {out.data(), D}});
  }
  state.SetItemsProcessed(state.iterations() * T);
}
BENCHMARK(BM_RmsNorm)->Arg(16)->Arg(8)->Arg(4)->MinTime(0.05);

// Mamba2's gated norm: 1536 channels in one group, both steps.
void BM_GatedNorm(benchmark::State& state) {
  const int T = 512, D = 1536;
  auto norm = CreateCpuNormKernels(WidthOfLanes(state.range(0)));
  std::vector<float> y(T * D, 0.3f), z(T * D, -0.7f), w(D, 1.1f), out(T * D), ss(T);
  const GatedNormArgs args{.num_tokens = T,
                           .group_size = D,
                           .norm_count = D,
                           .y = {y.data(), D},
                           .z = {z.data(), D},
                           .weight = w.data(),
                           .out = {out.data(), D}};
  for (auto _ : state) {
    norm->GatedSumSquares(args, ss.data());
    norm->GatedNormApply(args, ss.data());
  }
  state.SetItemsProcessed(state.iterations() * T);
}
BENCHMARK(BM_GatedNorm)->Arg(16)->Arg(8)->Arg(4)->MinTime(0.05);

}  // namespace
}  // namespace hc::kernels

int main(int argc, char** argv) {
#ifdef HC_HAVE_OPENBLAS
  openblas_set_num_threads(1);  // compare single-threaded kernels against a single-core peak
#endif
  std::string how;
  hc::kernels::g_peak_gflops = hc::kernels::MeasurePeakGflops(&how);
  std::printf("single-core fp32 peak: %.1f GFLOP/s (%s FMA loop)\n", hc::kernels::g_peak_gflops,
              how.c_str());
  hc::kernels::g_copy_gbps = hc::kernels::MeasureCopyGbps();
  std::printf("single-core memcpy: %.1f GB/s (bytes copied per second, 256 MiB)\n",
              hc::kernels::g_copy_gbps);
  hc::kernels::g_read_gbps = hc::kernels::MeasureAndPrintReadGbps("");
  benchmark::Initialize(&argc, argv);
  hc::kernels::bench::RegisterGemmBenchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  hc::kernels::MeasureAndPrintReadGbps(" after the benchmarks");
  hc::kernels::bench::PrintGemmSummary(hc::kernels::g_peak_gflops, hc::kernels::g_read_gbps);
  return 0;
}
