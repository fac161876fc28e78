// GPU benchmark (build/bench/gpu_bench; tests/gpu/run.sh runs it too):
//   1. device-to-device copy bandwidth (cudaMemcpyAsync), the roofline below;
//   2. each CUDA kernel at `small`-model sizes: time per call against its
//      memory floor = bytes it must move / the copy bandwidth measured in this
//      run (ratio 1.0 = at the bandwidth roof; GEMM prefill and attention
//      prefill are compute-bound, their TFLOP/s is printed too);
//   3. decode tokens/s of the `small` synthetic preset (seeded random fp32
//      weights) at batch 1 and 32;
//   4. turn-N time to first token: a 64-token turn after a 2,048-token
//      history, from the committed state (cached) vs from scratch.
// Prints a summary table. Exits 0 with "no CUDA device: ..." without a GPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_kernels.h"
#include "tests/unit/worker/model/test_model.h"
#include "worker/model/synthetic_checkpoint.h"
#include "worker/model/tensor_parallel_model.h"
#include "worker/runtime/backend_cache_memory.h"
#include "worker/runtime/cuda_backend.h"

namespace hc {
namespace {

using kernels::ConstRows;
using kernels::Rows;

#define BENCH_CHECK(cond)                                                                       \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      std::fprintf(stderr, "gpu_bench: check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::exit(1);                                                                             \
    }                                                                                           \
  } while (0)

class Bench {
 public:
  explicit Bench(runtime::CudaBackend* b) : b_(b), k_(b->kernels()) {
    cudaEventCreate(&start_);
    cudaEventCreate(&stop_);
  }
  ~Bench() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }

  float* F(size_t n, uint32_t seed = 0, float lo = -1.0f, float hi = 1.0f) {
    std::vector<float> h(std::max<size_t>(n, 1));
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> d(lo, hi);
    for (float& x : h) x = d(rng);
    return Up(h);
  }
  template <typename T>
  T* Up(const std::vector<T>& h) {
    auto buf = runtime::DeviceBuffer::Create(b_, h.size() * sizeof(T));
    BENCH_CHECK(buf.ok());
    BENCH_CHECK(b_->CopyHostToDevice(buf->data(), h.data(), h.size() * sizeof(T)).ok());
    T* p = buf->template as<T>();
    bufs_.push_back(std::move(buf).value());
    return p;
  }

  // Milliseconds per call of fn (enqueued on the backend stream), median of 5
  // batches of `iters` calls.
  double TimeMs(const std::function<void()>& fn, int iters = 20) {
    for (int i = 0; i < 3; ++i) fn();
    std::vector<double> ms;
    for (int rep = 0; rep < 5; ++rep) {
      cudaEventRecord(start_, b_->stream());
      for (int i = 0; i < iters; ++i) fn();
      cudaEventRecord(stop_, b_->stream());
      cudaEventSynchronize(stop_);
      float t = 0.0f;
      cudaEventElapsedTime(&t, start_, stop_);
      ms.push_back(t / iters);
    }
    BENCH_CHECK(b_->Synchronize().ok());
    std::sort(ms.begin(), ms.end());
    return ms[2];
  }

  void Row(const std::string& name, double ms, double bytes, double flops = 0.0) {
    const double floor_ms = bytes / (bw_gbs_ * 1e9) * 1e3;
    std::printf("%-34s %10.1f %12.2f %10.1f %8.2f", name.c_str(), ms * 1e3, bytes / 1e6,
                floor_ms * 1e3, ms / floor_ms);
    if (flops > 0) std::printf("   %.1f TFLOP/s", flops / (ms * 1e-3) / 1e12);
    std::printf("\n");
  }

  runtime::CudaBackend* b_;
  const kernels::KernelSet& k_;
  double bw_gbs_ = 0.0;

 private:
  cudaEvent_t start_, stop_;
  std::vector<runtime::DeviceBuffer> bufs_;
};

void CopyBandwidth(Bench& bench) {
  const size_t bytes = size_t{512} << 20;
  float* src = bench.F(bytes / 4, 1);
  float* dst = bench.F(bytes / 4, 2);
  const double ms = bench.TimeMs(
      [&] { cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, bench.b_->stream()); }, 10);
  bench.bw_gbs_ = 2.0 * bytes / (ms * 1e-3) / 1e9;  // read + write
  std::printf("copy bandwidth (D2D cudaMemcpyAsync, 512 MiB, read+write): %.0f GB/s\n\n",
              bench.bw_gbs_);
}

void Kernels(Bench& bench, const model::ModelConfig& c) {
  const auto& k = bench.k_;
  const int D = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
  const int hq = c.num_attention_heads, hkv = c.num_key_value_heads;
  const int H = c.mamba_n_heads, P = c.mamba_d_head, N = c.mamba_d_state, G = c.mamba_n_groups;
  const int din = c.d_inner(), conv = c.conv_dim(), in = c.in_proj_dim(), W = c.mamba_d_conv;
  const int T = 2048, B = 32, ctx = 1024, bs = 16;
  std::printf("%-34s %10s %12s %10s %8s\n", "kernel (small sizes)", "time us", "MB moved",
              "floor us", "x floor");
  // GEMMs: in_proj at decode (weights dominate) and prefill.
  float* x = bench.F(static_cast<size_t>(T) * std::max(D, din), 3);
  float* w = bench.F(static_cast<size_t>(in) * D, 4, -0.05f, 0.05f);
  float* y = bench.F(static_cast<size_t>(T) * std::max({in, 2 * I, conv}), 5);
  for (int m : {1, B, T}) {
    const double ms = bench.TimeMs([&] {
      k.gemm->Gemm(
          {.m = m, .n = in, .k = D, .a = x, .lda = D, .b = w, .ldb = D, .c = y, .ldc = in});
    });
    bench.Row("gemm in_proj m=" + std::to_string(m), ms,
              4.0 * (static_cast<double>(in) * D + static_cast<double>(m) * (D + in)),
              2.0 * m * in * D);
  }
  float* nw = bench.F(D, 6, 0.5f, 1.5f);
  float* out = bench.F(static_cast<size_t>(T) * std::max({D, din, I}), 7);
  bench.Row("rmsnorm T=2048", bench.TimeMs([&] {
    k.norm->RmsNorm({.num_tokens = T, .dim = D, .x = {x, D}, .weight = nw, .out = {out, D}});
  }),
            4.0 * (2.0 * T * D + D));
  bench.Row("silu_mul T=2048", bench.TimeMs([&] {
    k.elementwise->SiluMul(T, I, {y, 2 * I}, {out, I});
  }),
            4.0 * 3.0 * T * I);
  bench.Row("add_rows T=2048", bench.TimeMs([&] {
    k.elementwise->AddRows(T, D, {x, D}, {out, D});
  }),
            4.0 * 3.0 * T * D);
  std::vector<int32_t> ids(T), pos(T);
  for (int t = 0; t < T; ++t) ids[t] = (t * 31) % c.vocab_size, pos[t] = t;
  int32_t* dids = bench.Up(ids);
  int32_t* dpos = bench.Up(pos);
  float* table = bench.F(static_cast<size_t>(c.vocab_size) * D, 8);
  bench.Row("embedding T=2048", bench.TimeMs([&] {
    k.elementwise->EmbeddingGather(T, dids, table, D, {out, D});
  }),
            4.0 * 2.0 * T * D);
  const int qkv = (hq + 2 * hkv) * hd;
  bench.Row("rope T=2048", bench.TimeMs([&] {
    k.rope->ApplyRope({.num_tokens = T,
                       .positions = dpos,
                       .head_dim = hd,
                       .rotary_dim = c.rotary_dim(),
                       .theta = c.rope_theta,
                       .q = {y, qkv},
                       .num_q_heads = hq,
                       .k = {y + hq * hd, qkv},
                       .num_kv_heads = hkv});
  }),
            4.0 * 2.0 * T * (hq + hkv) * c.rotary_dim());
  float* z = bench.F(static_cast<size_t>(T) * din, 9);
  float* ss = bench.F(static_cast<size_t>(T) * G, 10);
  float* gw = bench.F(din, 11);
  const kernels::GatedNormArgs ga{.num_tokens = T,
                                  .num_groups = G,
                                  .group_size = din / G,
                                  .norm_count = din / G,
                                  .y = {out, din},
                                  .z = {z, din},
                                  .weight = gw,
                                  .out = {out, din}};
  bench.Row("gated_norm (sumsq+apply) T=2048", bench.TimeMs([&] {
    k.norm->GatedSumSquares(ga, ss);
    k.norm->GatedNormApply(ga, ss);
  }),
            4.0 * (2.0 * T * din + 3.0 * T * din));
  // Conv1d and SSM over one 2,048-token sequence and a 32-sequence decode step.
  std::vector<int32_t> slots(B);
  for (int i = 0; i < B; ++i) slots[i] = i;
  int32_t* dslots = bench.Up(slots);
  std::vector<int32_t> qsl1 = {0, T};
  int32_t* dqsl1 = bench.Up(qsl1);
  float* cw = bench.F(static_cast<size_t>(conv) * W, 12, -0.5f, 0.5f);
  float* cb = bench.F(conv, 13);
  float* cstate = bench.F(static_cast<size_t>(B) * conv * (W - 1), 14);
  const kernels::Conv1dParams cp{
      .conv_dim = conv, .width = W, .weight = cw, .bias = cb, .state = cstate};
  float* xbc = bench.F(static_cast<size_t>(T) * conv, 15);
  float* proj = bench.F(static_cast<size_t>(T) * in, 16);
  bench.Row("conv1d varlen T=2048", bench.TimeMs([&] {
    k.conv1d->CausalConv1dVarlen(cp, {1, dqsl1}, dslots, {proj + din, in}, {xbc, conv});
  }),
            4.0 * 2.0 * T * conv);
  bench.Row("conv1d update B=32", bench.TimeMs([&] {
    k.conv1d->CausalConv1dUpdate(cp, B, dslots, {proj + din, in}, {xbc, conv});
  }),
            4.0 * (2.0 * B * conv + 2.0 * B * conv * (W - 1)));
  float* a_log = bench.F(H, 17, 0.0f, 2.0f);
  float* dd = bench.F(H, 18);
  float* dtb = bench.F(H, 19, -3.0f, -1.0f);
  float* sstate = bench.F(static_cast<size_t>(B) * H * P * N, 20, -0.1f, 0.1f);
  const kernels::SsmParams sp{.num_heads = H,
                              .head_dim = P,
                              .state_size = N,
                              .num_groups = G,
                              .a_log = a_log,
                              .d = dd,
                              .dt_bias = dtb,
                              .chunk_size = c.mamba_chunk_size,
                              .state = sstate};
  const int gn = G * N;
  const kernels::SsmTensors io{.x = {xbc, conv},
                               .dt = {proj + din + conv, in},
                               .b = {xbc + din, conv},
                               .c = {xbc + din + gn, conv},
                               .y = {out, din}};
  const double state_bytes = 4.0 * H * P * N;
  bench.Row("ssd chunk scan T=2048",
            bench.TimeMs(
                [&] {
                  k.mamba2->SsdChunkScanVarlen(sp, {1, dqsl1}, dslots, io);
                },
                5),
            4.0 * T * (din + 2.0 * gn + H + din) + 2 * state_bytes);
  bench.Row("ssm state update B=32",
            bench.TimeMs([&] { k.mamba2->SelectiveStateUpdate(sp, B, dslots, io); }),
            2.0 * B * state_bytes + 4.0 * B * (2.0 * din + 2.0 * gn + H));
  // Attention: decode of 32 sequences with 1,024 cached tokens; one 2,048-token prefill.
  const int blocks_per_seq = (ctx + 1 + bs - 1) / bs;
  const int num_blocks = std::max(B * blocks_per_seq, T / bs + 1);
  float* kc = bench.F(static_cast<size_t>(num_blocks) * bs * hkv * hd, 21);
  float* vc = bench.F(static_cast<size_t>(num_blocks) * bs * hkv * hd, 22);
  const kernels::PagedKvCache cache{
      .k = kc, .v = vc, .block_size = bs, .num_kv_heads = hkv, .head_dim = hd};
  std::vector<int32_t> tables(B * blocks_per_seq), qsl_d(B + 1), comp_d(B, ctx), smap(T);
  for (int i = 0; i < B * blocks_per_seq; ++i) tables[i] = i;
  for (int i = 0; i <= B; ++i) qsl_d[i] = i;
  for (int t = 0; t < T; ++t) smap[t] = t;
  int32_t* dtables = bench.Up(tables);
  int32_t* dqsl_d = bench.Up(qsl_d);
  int32_t* dcomp_d = bench.Up(comp_d);
  int32_t* dsmap = bench.Up(smap);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  bench.Row("paged attention decode B=32 ctx=1k", bench.TimeMs([&] {
    k.attention->PagedAttention(
        {.num_q_heads = hq, .scale = scale, .q = {y, qkv}, .out = {out, hq * hd}},
        {.seqs = {B, dqsl_d},
         .num_computed_tokens = dcomp_d,
         .block_tables = dtables,
         .max_blocks_per_seq = blocks_per_seq},
        cache);
  }),
            4.0 * (2.0 * B * (ctx + 1) * hkv * hd + 2.0 * B * hq * hd));
  std::vector<int32_t> zero(1, 0), prefill_table(T / bs + 1);
  for (size_t i = 0; i < prefill_table.size(); ++i) prefill_table[i] = static_cast<int32_t>(i);
  int32_t* dzero = bench.Up(zero);
  int32_t* dptable = bench.Up(prefill_table);
  const double causal_flops = 4.0 * hq * hd * (static_cast<double>(T) * (T + 1) / 2);
  bench.Row("paged attention prefill T=2048",
            bench.TimeMs(
                [&] {
                  k.attention->PagedAttention(
                      {.num_q_heads = hq, .scale = scale, .q = {y, qkv}, .out = {out, hq * hd}},
                      {.seqs = {1, dqsl1},
                       .num_computed_tokens = dzero,
                       .block_tables = dptable,
                       .max_blocks_per_seq = static_cast<int>(prefill_table.size())},
                      cache);
                },
                5),
            4.0 * (2.0 * T * hq * hd + 2.0 * T * hkv * hd), causal_flops);
  bench.Row("write kv T=2048", bench.TimeMs([&] {
    k.attention->WriteKv(T, dsmap, {y + hq * hd, qkv}, {y + (hq + hkv) * hd, qkv}, cache);
  }),
            4.0 * 4.0 * T * hkv * hd);
  std::printf("\n");
}

std::vector<int32_t> Tokens(int n, uint32_t seed, int vocab) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

void Model(runtime::CudaBackend* backend, const model::ModelConfig& c) {
  using Clock = std::chrono::steady_clock;
  model::testing::RandomTensorSource source(c, 1);
  auto m = model::TensorParallelModel::Create(
      {.tp_size = 1, .backend = backend}, c,
      [&](std::string_view name, const std::vector<int64_t>& shape) {
        return model::testing::LoadF32ForTest(source, name, shape);
      });
  BENCH_CHECK(m.ok());
  auto& model = **m;
  constexpr int kBs = 16, kBlocks = 2048, kSlots = 40;
  auto mem = runtime::BackendCacheMemory::Create(model.KvLayout(kBlocks, kBs),
                                                 model.MambaLayout(kSlots), {backend});
  BENCH_CHECK(mem.ok());
  runtime::CacheMemory* cache = mem->get();
  std::vector<float> logits;
  int next_block = 0;
  auto blocks = [&](int n) {
    std::vector<int32_t> t(n);
    for (int32_t& b : t) b = next_block++;
    return t;
  };
  std::printf("%-44s %12s\n", "model (small preset, fp32, tp=1)", "value");
  for (int batch : {1, 32}) {
    next_block = 0;
    constexpr int kPrompt = 128, kSteps = 32;
    std::vector<std::vector<int32_t>> tables, prompts;
    model::ForwardBatch prefill;
    for (int s = 0; s < batch; ++s) {
      BENCH_CHECK(cache->ZeroMambaSlot(s).ok());
      tables.push_back(blocks((kPrompt + kSteps + 3 + kBs - 1) / kBs));
      prompts.push_back(Tokens(kPrompt, 100 + s, c.vocab_size));
    }
    for (int s = 0; s < batch; ++s) {
      prefill.seqs.push_back({.token_ids = prompts[s],
                              .num_computed_tokens = 0,
                              .block_table = tables[s],
                              .mamba_slot = s,
                              .need_logits = true});
    }
    BENCH_CHECK(model.Forward(prefill, cache, &logits).ok());
    std::vector<int32_t> step_tokens(batch);
    auto step = [&](int i) {
      model::ForwardBatch b;
      for (int s = 0; s < batch; ++s) {
        step_tokens[s] = (s * 7 + i * 13) % c.vocab_size;
        b.seqs.push_back({.token_ids = std::span<const int32_t>(&step_tokens[s], 1),
                          .num_computed_tokens = kPrompt + i,
                          .block_table = tables[s],
                          .mamba_slot = s,
                          .need_logits = true});
      }
      BENCH_CHECK(model.Forward(b, cache, &logits).ok());
    };
    for (int i = 0; i < 3; ++i) step(i);  // warm-up
    const auto t0 = Clock::now();
    for (int i = 3; i < 3 + kSteps; ++i) step(i);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("%-44s %12.1f\n", ("decode tokens/s, batch " + std::to_string(batch)).c_str(),
                batch * kSteps / s);
  }
  // Turn-N TTFT: 64 new tokens after a 2,048-token history.
  constexpr int kHist = 2048, kTurn = 64;
  next_block = 0;
  const auto hist = Tokens(kHist, 7, c.vocab_size), turn = Tokens(kTurn, 8, c.vocab_size);
  std::vector<int32_t> all(hist);
  all.insert(all.end(), turn.begin(), turn.end());
  const auto hist_table = blocks(kHist / kBs);
  const auto turn_blocks = blocks(kTurn / kBs);
  const auto fresh_table = blocks((kHist + kTurn) / kBs);
  BENCH_CHECK(cache->ZeroMambaSlot(0).ok());
  BENCH_CHECK(model
                  .Forward({{{.token_ids = hist,
                              .num_computed_tokens = 0,
                              .block_table = hist_table,
                              .mamba_slot = 0,
                              .need_logits = true}}},
                           cache, &logits)
                  .ok());
  std::vector<int32_t> cont_table(hist_table);
  cont_table.insert(cont_table.end(), turn_blocks.begin(), turn_blocks.end());
  auto cached = [&] {
    BENCH_CHECK(cache->CopyMambaSlot(0, 1).ok());  // the committed state, forked
    BENCH_CHECK(model
                    .Forward({{{.token_ids = turn,
                                .num_computed_tokens = kHist,
                                .block_table = cont_table,
                                .mamba_slot = 1,
                                .need_logits = true}}},
                             cache, &logits)
                    .ok());
  };
  auto uncached = [&] {
    BENCH_CHECK(cache->ZeroMambaSlot(2).ok());
    BENCH_CHECK(model
                    .Forward({{{.token_ids = all,
                                .num_computed_tokens = 0,
                                .block_table = fresh_table,
                                .mamba_slot = 2,
                                .need_logits = true}}},
                             cache, &logits)
                    .ok());
  };
  auto median_ms = [&](const std::function<void()>& fn) {
    fn();
    std::vector<double> ms;
    for (int i = 0; i < 5; ++i) {
      const auto t0 = Clock::now();
      fn();
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    return ms[2];
  };
  const double c_ms = median_ms(cached), u_ms = median_ms(uncached);
  std::printf("%-44s %12.2f\n", "turn TTFT ms, cached (64 after 2048)", c_ms);
  std::printf("%-44s %12.2f\n", "turn TTFT ms, uncached (2112 from scratch)", u_ms);
  std::printf("%-44s %12.1f\n", "cached speed-up (uncached / cached)", u_ms / c_ms);
}

int Main() {
  std::string why;
  if (kernels::CudaDeviceCount(&why) == 0) {
    std::printf("no CUDA device: %s; gpu_bench skipped\n", why.c_str());
    return 0;
  }
  auto backend = runtime::CreateCudaBackend();
  BENCH_CHECK(backend.ok());
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("device: %s, %d SMs, %.1f GiB\n", prop.name, prop.multiProcessorCount,
              prop.totalGlobalMem / double(1 << 30));
  auto preset = model::GetSyntheticPreset("small");
  BENCH_CHECK(preset.ok());
  model::ModelConfig c = preset->config;
  c.vocab_size = 8192;  // the preset's tokenizer target; weights are random anyway
  {
    Bench bench(backend->get());
    CopyBandwidth(bench);
    Kernels(bench, c);
  }
  Model(backend->get(), c);
  return 0;
}

}  // namespace
}  // namespace hc

int main() { return hc::Main(); }
