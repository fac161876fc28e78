#include "tests/bench/kernels/gemm_bench.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/half.h"

#ifdef HC_HAVE_OPENBLAS
#include <cblas.h>
#endif
#ifdef HC_HAVE_DNNL
#include "tests/bench/kernels/onednn_matmul.h"
#endif

namespace hc::kernels::bench {
namespace {

// (N, K) of the linear layers: the `small` checkpoint (D = 768: Mamba in_proj,
// out_proj, attention qkv) and a 2K-hidden model (D = 2048, I = 8192).
const std::vector<std::pair<int, int>> kShapes = {{3224, 768},  {768, 1536},  {1280, 768},
                                                  {2048, 2048}, {8192, 2048}, {2048, 8192}};
const std::vector<int> kMs = {1, 8, 64, 512};
constexpr int kMaxDecodeM = 8;  // m <= this: weights rotated through DRAM, reported as GB/s
constexpr size_t kRotateBytes = size_t{256} << 20;  // > any L3

enum class Lib { kOwn, kOpenBlas, kOneDnn };

struct Impl {
  const char* label;
  bool bf16;
  Lib lib;
  CpuGemmImpl gemm = CpuGemmImpl::kBlocked;
  CpuBf16GemmImpl bf16_path = CpuBf16GemmImpl::kAuto;
};

const std::vector<Impl>& Impls() {
  static const std::vector<Impl> impls = {
      {"f32 avx2", false, Lib::kOwn, CpuGemmImpl::kBlocked},
      {"f32 avx512", false, Lib::kOwn, CpuGemmImpl::kAvx512},
      {"f32 openblas", false, Lib::kOpenBlas},
      {"f32 onednn", false, Lib::kOneDnn},
      {"bf16 widen-avx2", true, Lib::kOwn, CpuGemmImpl::kBlocked, CpuBf16GemmImpl::kWidenAvx2},
      {"bf16 avx512bf16", true, Lib::kOwn, CpuGemmImpl::kBlocked, CpuBf16GemmImpl::kAvx512Bf16},
      {"bf16 onednn", true, Lib::kOneDnn},
  };
  return impls;
}

template <typename T>
const T* Align64(const T* p) {
  return reinterpret_cast<const T*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t{63});
}

// (label, m, n, k) -> seconds per call.
std::map<std::tuple<std::string, int, int, int>, double> g_seconds;

void BM_Gemm(benchmark::State& state, const Impl& impl) {
  const int m = state.range(0), n = state.range(1), k = state.range(2);
  const size_t elems = static_cast<size_t>(n) * k;
  const size_t weight_bytes = elems * (impl.bf16 ? 2 : 4);
  const int copies =
      m <= kMaxDecodeM ? static_cast<int>(std::max<size_t>(1, kRotateBytes / weight_bytes)) : 1;
  // 64-byte aligned, as the CPU backend allocates the model's weights.
  std::vector<float> w32_buf(impl.bf16 ? 0 : elems * copies + 16, 0.25f);
  std::vector<uint16_t> w16_buf(impl.bf16 ? elems * copies + 32 : 0, F32ToBf16(0.25f));
  const float* w32 = Align64(w32_buf.data());
  const uint16_t* w16 = Align64(w16_buf.data());
  std::vector<float> a(static_cast<size_t>(m) * k, 0.5f), c(static_cast<size_t>(m) * n);
  std::vector<uint16_t> a16(impl.bf16 ? a.size() : 0);
  std::function<void(int)> run;
  std::unique_ptr<GemmKernel> own;
#ifdef HC_HAVE_DNNL
  std::unique_ptr<OneDnnMatmul> dnnl;
#endif
  switch (impl.lib) {
    case Lib::kOwn: {
      auto gemm_or = CreateCpuGemm(impl.gemm, impl.bf16_path);
      if (!gemm_or.ok()) {
        state.SkipWithError(std::string(gemm_or.status().message()).c_str());
        return;
      }
      own = std::move(gemm_or).value();
      run = [&](int copy) {
        if (impl.bf16) {
          own->GemmBf16({.m = m,
                         .n = n,
                         .k = k,
                         .a = a.data(),
                         .lda = k,
                         .b = w16 + elems * copy,
                         .ldb = k,
                         .c = c.data(),
                         .ldc = n});
        } else {
          own->Gemm({.m = m,
                     .n = n,
                     .k = k,
                     .a = a.data(),
                     .lda = k,
                     .b = w32 + elems * copy,
                     .ldb = k,
                     .c = c.data(),
                     .ldc = n});
        }
      };
      break;
    }
    case Lib::kOpenBlas:
#ifdef HC_HAVE_OPENBLAS
      run = [&](int copy) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a.data(), k,
                    w32 + elems * copy, k, 0.0f, c.data(), n);
      };
      break;
#else
      state.SkipWithError("built without OpenBLAS");
      return;
#endif
    case Lib::kOneDnn: {
#ifdef HC_HAVE_DNNL
      std::string why;
      dnnl = OneDnnMatmul::Create(m, n, k, impl.bf16, &why);
      if (dnnl == nullptr) {
        state.SkipWithError(why.c_str());
        return;
      }
      state.SetLabel(dnnl->impl());
      run = [&](int copy) {
        if (impl.bf16) {  // oneDNN 2.6 multiplies bf16 by bf16: round A as our kernels do
          for (size_t i = 0; i < a.size(); ++i) a16[i] = F32ToBf16(a[i]);
          dnnl->Run(a16.data(), w16 + elems * copy, c.data());
        } else {
          dnnl->Run(a.data(), w32 + elems * copy, c.data());
        }
      };
      break;
#else
      state.SkipWithError("built without oneDNN");
      return;
#endif
    }
  }
  run(0);  // warm-up (buffers, primitive caches)
  double seconds = 0.0;
  int copy = 0;
  for (auto _ : state) {
    copy = (copy + 1) % copies;
    const double t0 = ThreadSeconds();
    run(copy);
    seconds += ThreadSeconds() - t0;
    benchmark::ClobberMemory();
  }
  const double per_call = seconds / state.iterations();
  state.counters["GFLOPS"] = 2.0 * m * n * k / per_call * 1e-9;
  state.counters["weight_GBps"] = weight_bytes / per_call * 1e-9;
  g_seconds[{impl.label, m, n, k}] = per_call;
}

}  // namespace

void RegisterGemmBenchmarks() {
  for (const Impl& impl : Impls()) {
    auto* b =
        benchmark::RegisterBenchmark((std::string("BM_Gemm/") + impl.label).c_str(),
                                     [&impl](benchmark::State& state) { BM_Gemm(state, impl); });
    for (int m : kMs) {
      for (auto [n, k] : kShapes) b->Args({m, n, k});
    }
    b->MinTime(0.05);
  }
}

void PrintGemmSummary(double peak_gflops, double read_gbps) {
  std::printf(
      "\n== GEMM (single thread) | prefill (M > %d): %% of the fp32 FMA peak %.1f GFLOP/s | "
      "decode: weight bytes/s as %% of streaming read %.1f GB/s ==\n",
      kMaxDecodeM, peak_gflops, read_gbps);
  std::printf("%4s %5s %5s", "M", "N", "K");
  for (const Impl& impl : Impls()) std::printf(" | %15s", impl.label);
  std::printf(" | best f32 / best bf16\n");
  for (int m : kMs) {
    for (auto [n, k] : kShapes) {
      std::printf("%4d %5d %5d", m, n, k);
      std::string best[2];
      double best_s[2] = {0, 0};
      for (const Impl& impl : Impls()) {
        const auto it = g_seconds.find({impl.label, m, n, k});
        if (it == g_seconds.end()) {
          std::printf(" | %15s", "-");
          continue;
        }
        const double s = it->second;
        const double frac = m <= kMaxDecodeM ? static_cast<double>(n) * k * (impl.bf16 ? 2 : 4) /
                                                   s * 1e-9 / read_gbps
                                             : 2.0 * m * n * k / s * 1e-9 / peak_gflops;
        std::printf(" | %14.0f%%", 100 * frac);
        if (best_s[impl.bf16] == 0 || s < best_s[impl.bf16]) {
          best_s[impl.bf16] = s;
          best[impl.bf16] = impl.label;
        }
      }
      std::printf(" | %s / %s (bf16 %.2fx f32)\n", best[0].c_str(), best[1].c_str(),
                  best_s[1] > 0 ? best_s[0] / best_s[1] : 0.0);
    }
  }
}

}  // namespace hc::kernels::bench
