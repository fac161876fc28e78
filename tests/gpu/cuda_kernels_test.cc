// Every CUDA kernel against its CPU kernel (kernels/cpu) on fresh seeded
// random inputs: fp32 to a relative error <= 1e-4 (relative to the largest
// reference value), the bf16 / fp16 GEMM paths <= 2e-2. Skips without a device.
#include "kernels/cuda/cuda_kernels.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "tests/gpu/gpu_test_util.h"
#include "worker/runtime/cuda_backend.h"

namespace hc::kernels {
namespace {

using gpu_testing::MaxRelError;
using gpu_testing::Random;

constexpr double kF32Tol = 1e-4;

class CudaKernelsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HC_SKIP_WITHOUT_CUDA_DEVICE(1);
    backend_ = runtime::CreateCudaBackend().value();
    arena_ = std::make_unique<gpu_testing::DeviceArena>(backend_.get());
    cpu_ = CreateCpuKernels({.gemm = CpuGemmImpl::kBlocked}).value();
  }
  const KernelSet& gpu() const { return backend_->kernels(); }
  template <typename T>
  T* Up(const std::vector<T>& v) {
    return arena_->Upload(v);
  }
  template <typename T>
  std::vector<T> Down(const T* p, size_t n) {
    return arena_->Download(p, n);
  }

  std::unique_ptr<runtime::CudaBackend> backend_;
  std::unique_ptr<gpu_testing::DeviceArena> arena_;
  KernelSet cpu_;
};

struct GemmShape {
  int m, n, k;
  int pad;  // extra elements per row of A, B and C (strided views)
  bool accumulate;
};

TEST_F(CudaKernelsTest, Fp32GemmMatchesCpu) {
  const GemmShape shapes[] = {{1, 96, 64, 0, false},
                              {3, 130, 257, 5, false},
                              {64, 200, 96, 0, true},
                              {257, 65, 33, 3, true},
                              {17, 40, 0, 0, false}};
  uint32_t seed = 1;
  for (const GemmShape& s : shapes) {
    SCOPED_TRACE(testing::Message() << "m=" << s.m << " n=" << s.n << " k=" << s.k);
    const int64_t lda = s.k + s.pad, ldb = s.k + s.pad, ldc = s.n + s.pad;
    const auto a = Random(s.m * lda, seed++), b = Random(s.n * ldb, seed++);
    auto c = Random(s.m * ldc, seed++);
    float* da = Up(a);
    float* db = Up(b);
    float* dc = Up(c);
    gpu().gemm->Gemm({.m = s.m,
                      .n = s.n,
                      .k = s.k,
                      .a = da,
                      .lda = lda,
                      .b = db,
                      .ldb = ldb,
                      .c = dc,
                      .ldc = ldc,
                      .accumulate = s.accumulate});
    cpu_.gemm->Gemm({.m = s.m,
                     .n = s.n,
                     .k = s.k,
                     .a = a.data(),
                     .lda = lda,
                     .b = b.data(),
                     .ldb = ldb,
                     .c = c.data(),
                     .ldc = ldc,
                     .accumulate = s.accumulate});
    EXPECT_LE(MaxRelError(Down(dc, c.size()), c), kF32Tol);
  }
}

TEST_F(CudaKernelsTest, Bf16AndFp16GemmMatchFp32CpuWithinTwoPercent) {
  const auto* gemm = dynamic_cast<const CudaGemmKernel*>(gpu().gemm.get());
  ASSERT_NE(gemm, nullptr);
  const int m = 33, n = 160, k = 768;
  const auto a = Random(m * k, 11), b = Random(n * k, 12);
  std::vector<float> want(m * n);
  cpu_.gemm->Gemm({.m = m,
                   .n = n,
                   .k = k,
                   .a = a.data(),
                   .lda = k,
                   .b = b.data(),
                   .ldb = k,
                   .c = want.data(),
                   .ldc = n});
  for (GemmInputType type : {GemmInputType::kBF16, GemmInputType::kF16}) {
    uint16_t* a16 = arena_->Zeros<uint16_t>(a.size());
    uint16_t* b16 = arena_->Zeros<uint16_t>(b.size());
    CudaConvertF32(Up(a), a16, a.size(), type, backend_->stream());
    CudaConvertF32(Up(b), b16, b.size(), type, backend_->stream());
    float* dc = arena_->Zeros<float>(want.size());
    gemm->MixedGemm({.m = m,
                     .n = n,
                     .k = k,
                     .input_type = type,
                     .a = a16,
                     .lda = k,
                     .b = b16,
                     .ldb = k,
                     .c = dc,
                     .ldc = n});
    const double err = MaxRelError(Down(dc, want.size()), want);
    EXPECT_LE(err, 2e-2) << (type == GemmInputType::kBF16 ? "bf16" : "fp16");
    EXPECT_GT(err, 0.0) << "16-bit inputs cannot reproduce the fp32 result exactly";
  }
}

TEST_F(CudaKernelsTest, RmsNormMatchesCpuStridedAndInPlace) {
  const int T = 37, D = 768, stride = 800;
  auto x = Random(T * stride, 21, -3.0f, 3.0f);
  const auto w = Random(D, 22, 0.5f, 1.5f);
  std::vector<float> out(T * D);
  float* dx = Up(x);
  float* dw = Up(w);
  float* dout = Up(out);
  gpu().norm->RmsNorm(
      {.num_tokens = T, .dim = D, .eps = 1e-5f, .x = {dx, stride}, .weight = dw, .out = {dout, D}});
  cpu_.norm->RmsNorm({.num_tokens = T,
                      .dim = D,
                      .eps = 1e-5f,
                      .x = {x.data(), stride},
                      .weight = w.data(),
                      .out = {out.data(), D}});
  EXPECT_LE(MaxRelError(Down(dout, out.size()), out), kF32Tol);
  // In place (out aliases x).
  gpu().norm->RmsNorm({.num_tokens = T,
                       .dim = D,
                       .eps = 1e-5f,
                       .x = {dx, stride},
                       .weight = dw,
                       .out = {dx, stride}});
  cpu_.norm->RmsNorm({.num_tokens = T,
                      .dim = D,
                      .eps = 1e-5f,
                      .x = {x.data(), stride},
                      .weight = w.data(),
                      .out = {x.data(), stride}});
  EXPECT_LE(MaxRelError(Down(dx, x.size()), x), kF32Tol);
}

TEST_F(CudaKernelsTest, GatedNormMatchesCpuWithSplitGroupCount) {
  for (int groups : {1, 4}) {
    SCOPED_TRACE(groups);
    const int T = 19, gs = 96, width = groups * gs, zstride = 3 * width;
    const int norm_count = groups == 1 ? 2 * gs : gs;  // 1 group: as if split over 2 ranks
    auto y = Random(T * width, 31, -2.0f, 2.0f);
    const auto z = Random(T * zstride, 32, -3.0f, 3.0f);
    const auto w = Random(width, 33, 0.5f, 1.5f);
    float* dy = Up(y);
    float* dz = Up(z);
    float* dw = Up(w);
    float* dss = arena_->Zeros<float>(T * groups);
    std::vector<float> ss(T * groups);
    const GatedNormArgs ga{.num_tokens = T,
                           .num_groups = groups,
                           .group_size = gs,
                           .norm_count = norm_count,
                           .eps = 1e-5f,
                           .y = {dy, width},
                           .z = {dz, zstride},
                           .weight = dw,
                           .out = {dy, width}};
    const GatedNormArgs ca{.num_tokens = T,
                           .num_groups = groups,
                           .group_size = gs,
                           .norm_count = norm_count,
                           .eps = 1e-5f,
                           .y = {y.data(), width},
                           .z = {z.data(), zstride},
                           .weight = w.data(),
                           .out = {y.data(), width}};
    gpu().norm->GatedSumSquares(ga, dss);
    cpu_.norm->GatedSumSquares(ca, ss.data());
    EXPECT_LE(MaxRelError(Down(dss, ss.size()), ss), kF32Tol);
    gpu().norm->GatedNormApply(ga, dss);
    cpu_.norm->GatedNormApply(ca, ss.data());
    EXPECT_LE(MaxRelError(Down(dy, y.size()), y), kF32Tol);
  }
}

TEST_F(CudaKernelsTest, PartialRopeMatchesCpu) {
  const int T = 29, hd = 64, rot = 32, hq = 12, hkv = 4;
  const int stride = (hq + 2 * hkv) * hd;  // fused qkv rows
  auto qkv = Random(T * stride, 41);
  std::vector<int32_t> pos(T);
  std::mt19937 rng(42);
  for (int32_t& p : pos) p = static_cast<int32_t>(rng() % 8000);
  float* dqkv = Up(qkv);
  const int32_t* dpos = Up(pos);
  gpu().rope->ApplyRope({.num_tokens = T,
                         .positions = dpos,
                         .head_dim = hd,
                         .rotary_dim = rot,
                         .theta = 10000.0f,
                         .q = {dqkv, stride},
                         .num_q_heads = hq,
                         .k = {dqkv + hq * hd, stride},
                         .num_kv_heads = hkv});
  cpu_.rope->ApplyRope({.num_tokens = T,
                        .positions = pos.data(),
                        .head_dim = hd,
                        .rotary_dim = rot,
                        .theta = 10000.0f,
                        .q = {qkv.data(), stride},
                        .num_q_heads = hq,
                        .k = {qkv.data() + hq * hd, stride},
                        .num_kv_heads = hkv});
  EXPECT_LE(MaxRelError(Down(dqkv, qkv.size()), qkv), kF32Tol);
}

TEST_F(CudaKernelsTest, ElementwiseMatchCpu) {
  const int T = 23, width = 1000, D = 384, V = 50;
  const auto gate_up = Random(T * 2 * width, 51, -4.0f, 4.0f);
  std::vector<float> act(T * width);
  float* dgu = Up(gate_up);
  float* dact = Up(act);
  gpu().elementwise->SiluMul(T, width, {dgu, 2 * width}, {dact, width});
  cpu_.elementwise->SiluMul(T, width, {gate_up.data(), 2 * width}, {act.data(), width});
  EXPECT_LE(MaxRelError(Down(dact, act.size()), act), kF32Tol);

  const auto table = Random(V * D, 52);
  std::vector<int32_t> ids(T);
  for (int t = 0; t < T; ++t) ids[t] = (t * 7 + 3) % V;
  std::vector<float> emb(T * D);
  float* demb = Up(emb);
  gpu().elementwise->EmbeddingGather(T, Up(ids), Up(table), D, {demb, D});
  cpu_.elementwise->EmbeddingGather(T, ids.data(), table.data(), D, {emb.data(), D});
  EXPECT_EQ(Down(demb, emb.size()), emb);

  const auto x = Random(T * 2 * D, 53);
  gpu().elementwise->AddRows(T, D, {Up(x), 2 * D}, {demb, D});
  cpu_.elementwise->AddRows(T, D, {x.data(), 2 * D}, {emb.data(), D});
  EXPECT_LE(MaxRelError(Down(demb, emb.size()), emb), kF32Tol);

  // relu², in place over a strided view; row scaling.
  float* dgu2 = Up(gate_up);
  auto gu2 = gate_up;
  gpu().elementwise->Relu2(T, width, {dgu2, 2 * width}, {dgu2, 2 * width});
  cpu_.elementwise->Relu2(T, width, {gu2.data(), 2 * width}, {gu2.data(), 2 * width});
  gpu().elementwise->ScaleRows(T, width, 0.37f, {dgu2 + width, 2 * width});
  cpu_.elementwise->ScaleRows(T, width, 0.37f, {gu2.data() + width, 2 * width});
  EXPECT_LE(MaxRelError(Down(dgu2, gu2.size()), gu2), kF32Tol);

  // Weighted scatter-add of 9 expert rows into distinct token rows.
  const int R = 9;
  const auto expert = Random(R * D, 54);
  std::vector<int32_t> rows(R);
  for (int r = 0; r < R; ++r) rows[r] = (r * 5 + 1) % T;  // distinct: 5 and T are coprime
  const auto weights = Random(R, 55, 0.0f, 1.0f);
  gpu().elementwise->ScatterAddRows(R, D, Up(rows), Up(weights), {Up(expert), D}, {demb, D});
  cpu_.elementwise->ScatterAddRows(R, D, rows.data(), weights.data(), {expert.data(), D},
                                   {emb.data(), D});
  EXPECT_LE(MaxRelError(Down(demb, emb.size()), emb), kF32Tol);
}

// Conv1d over a varlen batch with an empty sequence, non-identity slots and a
// strided input (a column range of a wider buffer), then single steps.
TEST_F(CudaKernelsTest, CausalConv1dVarlenAndUpdateMatchCpu) {
  const int C = 200, W = 4, hist = W - 1, slots_total = 6, in_stride = 512;
  const std::vector<int32_t> qsl = {0, 5, 6, 6, 49};
  const std::vector<int32_t> slots = {4, 0, 2, 5};
  const int T = qsl.back(), S = 4;
  const auto x = Random(T * in_stride, 61, -2.0f, 2.0f);
  const auto w = Random(C * W, 62, -0.5f, 0.5f);
  const auto bias = Random(C, 63, -0.1f, 0.1f);
  auto state = Random(slots_total * C * hist, 64);
  std::vector<float> out(T * C);
  float* dstate = Up(state);
  float* dout = Up(out);
  const float* dx = Up(x) + 7;  // channels start at column 7
  Conv1dParams gp{.conv_dim = C,
                  .width = W,
                  .weight = Up(w),
                  .bias = Up(bias),
                  .apply_silu = true,
                  .state = dstate};
  Conv1dParams cp{.conv_dim = C,
                  .width = W,
                  .weight = w.data(),
                  .bias = bias.data(),
                  .apply_silu = true,
                  .state = state.data()};
  gpu().conv1d->CausalConv1dVarlen(gp, {S, Up(qsl)}, Up(slots), {dx, in_stride}, {dout, C});
  cpu_.conv1d->CausalConv1dVarlen(cp, {S, qsl.data()}, slots.data(), {x.data() + 7, in_stride},
                                  {out.data(), C});
  EXPECT_LE(MaxRelError(Down(dout, out.size()), out), kF32Tol);
  EXPECT_LE(MaxRelError(Down(dstate, state.size()), state), kF32Tol);

  const std::vector<int32_t> step_slots = {2, 4, 1};
  const int B = 3;
  const auto xs = Random(B * in_stride, 65, -2.0f, 2.0f);
  std::vector<float> step_out(B * C);
  float* dstep = Up(step_out);
  gp.apply_silu = cp.apply_silu = false;
  gp.bias = nullptr;
  cp.bias = nullptr;
  gpu().conv1d->CausalConv1dUpdate(gp, B, Up(step_slots), {Up(xs), in_stride}, {dstep, C});
  cpu_.conv1d->CausalConv1dUpdate(cp, B, step_slots.data(), {xs.data(), in_stride},
                                  {step_out.data(), C});
  EXPECT_LE(MaxRelError(Down(dstep, step_out.size()), step_out), kF32Tol);
  EXPECT_LE(MaxRelError(Down(dstate, state.size()), state), kF32Tol);
}

struct SsmShape {
  int H, P, N, G, chunk;
};

class CudaSsmTest : public CudaKernelsTest, public ::testing::WithParamInterface<SsmShape> {};

// The chunked scan from random initial states over sequences that end inside,
// at, and across chunk boundaries (and an empty one), then one decode step.
TEST_P(CudaSsmTest, ChunkScanAndStateUpdateMatchCpu) {
  const SsmShape sh = GetParam();
  const int H = sh.H, P = sh.P, N = sh.N, G = sh.G;
  const std::vector<int32_t> qsl = {0, 1, 1 + 2 * sh.chunk, 1 + 2 * sh.chunk,
                                    1 + 2 * sh.chunk + 3 * sh.chunk / 2 + 7};
  const std::vector<int32_t> slots = {3, 0, 1, 2};
  const int T = qsl.back(), S = 4, num_slots = 4;
  const int conv = H * P + 2 * G * N, dt_stride = H + 5;
  // x | B | C in one buffer, as the conv output is laid out in the model.
  const auto xbc = Random(T * conv, 71, -1.0f, 1.0f);
  const auto dt = Random(T * dt_stride, 72, -3.0f, 1.0f);
  const auto a_log = Random(H, 73, 0.0f, 2.0f);
  const auto d = Random(H, 74, 0.5f, 1.5f);
  const auto dt_bias = Random(H, 75, -2.0f, 0.0f);
  auto state = Random(num_slots * H * P * N, 76, -0.5f, 0.5f);
  std::vector<float> y(T * H * P);
  float* dxbc = Up(xbc);
  float* ddt = Up(dt);
  float* dstate = Up(state);
  float* dy = Up(y);
  SsmParams gp{.num_heads = H,
               .head_dim = P,
               .state_size = N,
               .num_groups = G,
               .a_log = Up(a_log),
               .d = Up(d),
               .dt_bias = Up(dt_bias),
               .dt_min = 0.001f,
               .dt_max = 5.0f,
               .chunk_size = sh.chunk,
               .state = dstate};
  SsmParams cp{.num_heads = H,
               .head_dim = P,
               .state_size = N,
               .num_groups = G,
               .a_log = a_log.data(),
               .d = d.data(),
               .dt_bias = dt_bias.data(),
               .dt_min = 0.001f,
               .dt_max = 5.0f,
               .chunk_size = sh.chunk,
               .state = state.data()};
  const int hp = H * P, gn = G * N;
  const SsmTensors gio{.x = {dxbc, conv},
                       .dt = {ddt, dt_stride},
                       .b = {dxbc + hp, conv},
                       .c = {dxbc + hp + gn, conv},
                       .y = {dy, hp}};
  const SsmTensors cio{.x = {xbc.data(), conv},
                       .dt = {dt.data(), dt_stride},
                       .b = {xbc.data() + hp, conv},
                       .c = {xbc.data() + hp + gn, conv},
                       .y = {y.data(), hp}};
  gpu().mamba2->SsdChunkScanVarlen(gp, {S, Up(qsl)}, Up(slots), gio);
  cpu_.mamba2->SsdChunkScanVarlen(cp, {S, qsl.data()}, slots.data(), cio);
  EXPECT_LE(MaxRelError(Down(dy, y.size()), y), kF32Tol);
  EXPECT_LE(MaxRelError(Down(dstate, state.size()), state), kF32Tol);

  // One step for 3 of the slots (rows 0..2 of the same tensors).
  const std::vector<int32_t> step_slots = {1, 3, 2};
  gpu().mamba2->SelectiveStateUpdate(gp, 3, Up(step_slots), gio);
  cpu_.mamba2->SelectiveStateUpdate(cp, 3, step_slots.data(), cio);
  EXPECT_LE(MaxRelError(Down(dy, 3 * hp), std::vector<float>(y.begin(), y.begin() + 3 * hp)),
            kF32Tol);
  EXPECT_LE(MaxRelError(Down(dstate, state.size()), state), kF32Tol);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaSsmTest,
                         ::testing::Values(SsmShape{4, 16, 8, 1, 8},       // tiny test model
                                           SsmShape{6, 32, 16, 2, 16},     // groups
                                           SsmShape{4, 64, 128, 1, 64},    // Bamba-like P, N
                                           SsmShape{2, 64, 64, 1, 128}));  // small preset

struct AttnShape {
  int hq, hkv, hd, block_size;
};

class CudaAttentionTest : public CudaKernelsTest,
                          public ::testing::WithParamInterface<AttnShape> {};

// KV write then attention for a mixed batch: a fresh prefill, a decode token
// after a long cached prefix, a prefill chunk after cached tokens and an
// empty sequence; block tables are shuffled block ids.
TEST_P(CudaAttentionTest, WriteKvAndPagedAttentionMatchCpu) {
  const AttnShape sh = GetParam();
  const int hq = sh.hq, hkv = sh.hkv, hd = sh.hd, bs = sh.block_size;
  const std::vector<int32_t> computed = {0, 300, 45, 10};
  const std::vector<int32_t> lens = {70, 1, 33, 0};
  const int S = 4;
  int max_blocks = 0, total_blocks = 0;
  for (int s = 0; s < S; ++s) {
    const int nb = (computed[s] + lens[s] + bs - 1) / bs;
    max_blocks = std::max(max_blocks, nb);
    total_blocks += nb;
  }
  const int num_blocks = total_blocks + 5;
  std::vector<int32_t> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(81));
  std::vector<int32_t> tables(S * max_blocks, 0), qsl = {0}, slot_mapping;
  int next = 0;
  for (int s = 0; s < S; ++s) {
    const int nb = (computed[s] + lens[s] + bs - 1) / bs;
    for (int b = 0; b < nb; ++b) tables[s * max_blocks + b] = perm[next++];
    for (int i = 0; i < lens[s]; ++i) {
      const int pos = computed[s] + i;
      slot_mapping.push_back(tables[s * max_blocks + pos / bs] * bs + pos % bs);
    }
    qsl.push_back(qsl.back() + lens[s]);
  }
  const int T = qsl.back();
  const int64_t kv_elems = static_cast<int64_t>(num_blocks) * bs * hkv * hd;
  // Cached tokens: random KV everywhere (the new tokens' rows are overwritten).
  auto kc = Random(kv_elems, 82), vc = Random(kv_elems, 83);
  const int qkv_stride = (hq + 2 * hkv) * hd;
  const auto qkv = Random(T * qkv_stride, 84, -2.0f, 2.0f);
  std::vector<float> out(T * hq * hd, 0.0f);
  float* dkc = Up(kc);
  float* dvc = Up(vc);
  float* dqkv = Up(qkv);
  float* dout = Up(out);
  const PagedKvCache gcache{
      .k = dkc, .v = dvc, .block_size = bs, .num_kv_heads = hkv, .head_dim = hd};
  const PagedKvCache ccache{
      .k = kc.data(), .v = vc.data(), .block_size = bs, .num_kv_heads = hkv, .head_dim = hd};
  gpu().attention->WriteKv(T, Up(slot_mapping), {dqkv + hq * hd, qkv_stride},
                           {dqkv + (hq + hkv) * hd, qkv_stride}, gcache);
  cpu_.attention->WriteKv(T, slot_mapping.data(), {qkv.data() + hq * hd, qkv_stride},
                          {qkv.data() + (hq + hkv) * hd, qkv_stride}, ccache);
  EXPECT_EQ(Down(dkc, kc.size()), kc);
  EXPECT_EQ(Down(dvc, vc.size()), vc);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  gpu().attention->PagedAttention(
      {.num_q_heads = hq, .scale = scale, .q = {dqkv, qkv_stride}, .out = {dout, hq * hd}},
      {.seqs = {S, Up(qsl)},
       .num_computed_tokens = Up(computed),
       .block_tables = Up(tables),
       .max_blocks_per_seq = max_blocks},
      gcache);
  cpu_.attention->PagedAttention({.num_q_heads = hq,
                                  .scale = scale,
                                  .q = {qkv.data(), qkv_stride},
                                  .out = {out.data(), hq * hd}},
                                 {.seqs = {S, qsl.data()},
                                  .num_computed_tokens = computed.data(),
                                  .block_tables = tables.data(),
                                  .max_blocks_per_seq = max_blocks},
                                 ccache);
  EXPECT_LE(MaxRelError(Down(dout, out.size()), out), kF32Tol);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaAttentionTest,
                         ::testing::Values(AttnShape{4, 2, 8, 16},    // tiny test model
                                           AttnShape{12, 4, 64, 16},  // small preset
                                           AttnShape{8, 8, 80, 32},   // head_dim not % 32
                                           AttnShape{16, 2, 128, 16},
                                           AttnShape{4, 1, 256, 16}));  // largest head_dim

}  // namespace
}  // namespace hc::kernels
