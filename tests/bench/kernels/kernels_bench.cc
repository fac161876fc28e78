// Kernel benchmarks: fp32 GEMM of a 50-100M-parameter model's linear layers
// (own blocked kernel vs OpenBLAS, both single-threaded) against the
// single-core fp32 FMA peak measured by a register-only FMA loop in the same
// run; plus the Mamba2 scan/update and paged attention at model sizes.
//
// Prints one line per GEMM shape with GFLOP/s, the fraction of the measured
// peak, and own/OpenBLAS, then the best fraction over the M >= 64 shapes.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cpu/cpu_kernels.h"

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
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  hc::kernels::PrintGemmSummary();
  return 0;
}
