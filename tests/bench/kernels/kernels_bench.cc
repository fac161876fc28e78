// Kernel benchmarks: fp32 GEMM of a 50-100M-parameter model's linear layers
// (own blocked kernel vs OpenBLAS, both single-threaded) against the
// single-core fp32 FMA peak measured by a register-only FMA loop in the same
// run; plus the Mamba2 scan/update and paged attention at model sizes.
//
// Prints one line per GEMM shape with GFLOP/s, the fraction of the measured
// peak, and own/OpenBLAS, then the best fraction over the M >= 64 shapes.
//
// bf16 weights (GemmBf16), every path this CPU runs vs the fp32 own kernel on
// the same shapes: decode (M = 1..8, memory-bound) as GB/s of weights read
// against the single-core memcpy bandwidth measured in the same run, with the
// weights rotated over > 256 MiB of copies so they come from DRAM as in a real
// model; prefill (M >= 64) as GFLOP/s.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/half.h"

#ifdef HC_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace hc::kernels {
namespace {

using Clock = std::chrono::steady_clock;

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
    const auto t0 = Clock::now();
    const double flops = loop(20'000'000);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
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
// (impl, m, n, k) -> GFLOP/s of the last (final) run of that benchmark.
std::map<std::tuple<std::string, int, int, int>, double> g_gemm_results;

void BM_Gemm(benchmark::State& state, CpuGemmImpl impl) {
  const int m = state.range(0), n = state.range(1), k = state.range(2);
  auto gemm_or = CreateCpuGemm(impl);
  if (!gemm_or.ok()) {
    state.SkipWithError("implementation not built");
    return;
  }
  auto gemm = std::move(gemm_or).value();
  std::vector<float> a(static_cast<size_t>(m) * k, 0.5f), b(static_cast<size_t>(n) * k, 0.25f),
      c(static_cast<size_t>(m) * n);
  const GemmArgs args{.m = m,
                      .n = n,
                      .k = k,
                      .a = a.data(),
                      .lda = k,
                      .b = b.data(),
                      .ldb = k,
                      .c = c.data(),
                      .ldc = n};
  gemm->Gemm(args);  // warm-up (packing buffers, thread pools)
  double seconds = 0.0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    gemm->Gemm(args);
    seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    benchmark::ClobberMemory();
  }
  const double gflops = 2.0 * m * n * k * state.iterations() / seconds * 1e-9;
  state.counters["GFLOPS"] = gflops;
  state.counters["peak_frac"] = g_peak_gflops > 0 ? gflops / g_peak_gflops : 0.0;
  state.SetLabel(gemm->name());
  g_gemm_results[{impl == CpuGemmImpl::kBlocked ? "own" : "openblas", m, n, k}] = gflops;
}

// (N, K) of the linear layers: D = 768 (I = 2048) and D = 1024 (I = 2816),
// d_inner = 2D, N = 128, G = 1, H = d_inner / 64.
const std::vector<std::pair<int, int>> kLinearShapes = {{768, 768},   {4096, 768},  {768, 2048},
                                                        {3352, 768},  {1024, 1024}, {5632, 1024},
                                                        {1024, 2816}, {4384, 1024}};
const std::vector<int> kMs = {1, 8, 64, 512};

void GemmArgsFor(benchmark::internal::Benchmark* b) {
  for (int m : kMs) {
    for (auto [n, k] : kLinearShapes) b->Args({m, n, k});
  }
}

BENCHMARK_CAPTURE(BM_Gemm, own, CpuGemmImpl::kBlocked)->Apply(GemmArgsFor)->MinTime(0.05);
#ifdef HC_HAVE_OPENBLAS
BENCHMARK_CAPTURE(BM_Gemm, openblas, CpuGemmImpl::kOpenBlas)->Apply(GemmArgsFor)->MinTime(0.05);
#endif

// ---- bf16 weights -----------------------------------------------------------
constexpr size_t kRotateBytes = size_t{256} << 20;  // > any L3: weights come from DRAM
const std::vector<int> kBf16Ms = {1, 2, 4, 8, 64, 512};
const std::vector<std::pair<int, int>> kBf16Shapes = {{4096, 768}, {768, 2048}, {5632, 1024}};

double g_copy_gbps = 0.0;
// (path, m, n, k) -> seconds per call.
std::map<std::tuple<std::string, int, int, int>, double> g_bf16_seconds;

// Single-core memcpy bandwidth (bytes copied per second) over 256 MiB buffers.
double MeasureCopyGbps() {
  std::vector<char> src(kRotateBytes, 1), dst(kRotateBytes, 0);
  double best = 0.0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = Clock::now();
    std::memcpy(dst.data(), src.data(), src.size());
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    benchmark::DoNotOptimize(dst.data());
    best = std::max(best, src.size() / s * 1e-9);
  }
  return best;
}

// path: "fp32" (own fp32 kernel on fp32 weights) or a CpuBf16GemmImpl.
void BM_WeightGemm(benchmark::State& state, const char* label, bool bf16, CpuBf16GemmImpl path) {
  const int m = state.range(0), n = state.range(1), k = state.range(2);
  auto gemm_or = CreateCpuGemm(CpuGemmImpl::kBlocked, path);
  if (!gemm_or.ok()) {
    state.SkipWithError(std::string(gemm_or.status().message()).c_str());
    return;
  }
  auto gemm = std::move(gemm_or).value();
  const size_t elems = static_cast<size_t>(n) * k;
  const size_t weight_bytes = elems * (bf16 ? 2 : 4);
  const int copies =
      m <= 8 ? static_cast<int>(std::max<size_t>(1, kRotateBytes / weight_bytes)) : 1;
  std::vector<float> w32(bf16 ? 0 : elems * copies, 0.25f);
  std::vector<uint16_t> w16(bf16 ? elems * copies : 0, F32ToBf16(0.25f));
  std::vector<float> a(static_cast<size_t>(m) * k, 0.5f), c(static_cast<size_t>(m) * n);
  auto run = [&](int copy) {
    if (bf16) {
      gemm->GemmBf16({.m = m,
                      .n = n,
                      .k = k,
                      .a = a.data(),
                      .lda = k,
                      .b = w16.data() + elems * copy,
                      .ldb = k,
                      .c = c.data(),
                      .ldc = n});
    } else {
      gemm->Gemm({.m = m,
                  .n = n,
                  .k = k,
                  .a = a.data(),
                  .lda = k,
                  .b = w32.data() + elems * copy,
                  .ldb = k,
                  .c = c.data(),
                  .ldc = n});
    }
  };
  run(0);
  double seconds = 0.0;
  int copy = 0;
  for (auto _ : state) {
    copy = (copy + 1) % copies;
    const auto t0 = Clock::now();
    run(copy);
    seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    benchmark::ClobberMemory();
  }
  const double per_call = seconds / state.iterations();
  state.counters["GFLOPS"] = 2.0 * m * n * k / per_call * 1e-9;
  state.counters["weight_GBps"] = weight_bytes / per_call * 1e-9;
  state.SetLabel(label);
  g_bf16_seconds[{label, m, n, k}] = per_call;
}

void WeightGemmArgs(benchmark::internal::Benchmark* b) {
  for (int m : kBf16Ms) {
    for (auto [n, k] : kBf16Shapes) b->Args({m, n, k});
  }
}

BENCHMARK_CAPTURE(BM_WeightGemm, fp32, "fp32", false, CpuBf16GemmImpl::kAuto)
    ->Apply(WeightGemmArgs)
    ->MinTime(0.05);
BENCHMARK_CAPTURE(BM_WeightGemm, bf16_widen, "widen-avx2", true, CpuBf16GemmImpl::kWidenAvx2)
    ->Apply(WeightGemmArgs)
    ->MinTime(0.05);
BENCHMARK_CAPTURE(BM_WeightGemm, bf16_dp, "avx512bf16", true, CpuBf16GemmImpl::kAvx512Bf16)
    ->Apply(WeightGemmArgs)
    ->MinTime(0.05);

void PrintBf16Summary() {
  std::printf("\n== bf16-weight GEMM (single thread; memcpy %.1f GB/s measured; auto = %s) ==\n",
              g_copy_gbps, CpuBf16GemmName(CpuBf16GemmImpl::kAuto));
  std::printf("%4s %5s %5s | %-28s | %-28s | %-28s\n", "M", "N", "K", "fp32 weights",
              "bf16 widen-avx2", "bf16 avx512bf16");
  for (int m : kBf16Ms) {
    for (auto [n, k] : kBf16Shapes) {
      const double flops = 2.0 * m * n * k;
      std::printf("%4d %5d %5d", m, n, k);
      double fp32 = 0.0;
      for (const char* label : {"fp32", "widen-avx2", "avx512bf16"}) {
        const auto it = g_bf16_seconds.find({label, m, n, k});
        if (it == g_bf16_seconds.end()) {
          std::printf(" | %-28s", "n/a");
          continue;
        }
        const double s = it->second;
        if (fp32 == 0.0) fp32 = s;
        const double bytes = static_cast<double>(n) * k * (label == std::string("fp32") ? 4 : 2);
        char cell[64];
        if (m <= 8) {
          std::snprintf(cell, sizeof cell, "%6.1f GB/s %3.0f%%cp %5.2fx", bytes / s * 1e-9,
                        100 * bytes / s * 1e-9 / g_copy_gbps, fp32 / s);
        } else {
          std::snprintf(cell, sizeof cell, "%6.1f GF/s %13.2fx", flops / s * 1e-9, fp32 / s);
        }
        std::printf(" | %-28s", cell);
      }
      std::printf("\n");
    }
  }
  std::printf(
      "(decode cells: weight GB/s, %% of memcpy GB/s, speed-up over fp32; prefill: "
      "GFLOP/s, speed-up)\n");
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

void PrintGemmSummary() {
  std::printf("\n== GEMM summary (single thread; peak %.1f GFLOP/s measured) ==\n", g_peak_gflops);
  std::printf("%5s %5s %5s | %9s %6s | %9s %6s | own/openblas\n", "M", "N", "K", "own GF/s",
              "%peak", "oblas GF/s", "%peak");
  double best_own = 0, best_blas = 0;
  for (int m : kMs) {
    for (auto [n, k] : kLinearShapes) {
      const auto own_it = g_gemm_results.find({"own", m, n, k});
      const auto blas_it = g_gemm_results.find({"openblas", m, n, k});
      const double own = own_it == g_gemm_results.end() ? 0 : own_it->second;
      const double blas = blas_it == g_gemm_results.end() ? 0 : blas_it->second;
      if (own == 0 && blas == 0) continue;  // filtered out
      if (m >= 64) {
        best_own = std::max(best_own, own);
        best_blas = std::max(best_blas, blas);
      }
      std::printf("%5d %5d %5d | %9.1f %5.0f%% | %9.1f %5.0f%% | %.2fx\n", m, n, k, own,
                  100 * own / g_peak_gflops, blas, 100 * blas / g_peak_gflops,
                  blas > 0 ? own / blas : 0.0);
    }
  }
  std::printf("best M>=64: own %.0f%% of peak, openblas %.0f%% of peak (goal >= 50%%)\n",
              100 * best_own / g_peak_gflops, 100 * best_blas / g_peak_gflops);
}

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
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  hc::kernels::PrintGemmSummary();
  hc::kernels::PrintBf16Summary();
  return 0;
}
