// Norms, RoPE and element-wise kernels against plain references.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/intra_op.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/cpu_kernels_simd.h"
#include "kernels/half.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace hc::kernels {
namespace {

using testing::MaxRelError;
using testing::RandomVector;

double SiluRef(double x) { return x / (1.0 + std::exp(-x)); }

TEST(RmsNormTest, MatchesReferenceWithStridedRowsAndInPlace) {
  const int T = 5, D = 24, stride = 30;
  const float eps = 1e-5f;
  const auto x = RandomVector(T * stride, 11);
  const auto w = RandomVector(D, 12, 0.5f, 1.5f);
  std::vector<float> want(T * D);
  for (int t = 0; t < T; ++t) {
    double ss = 0;
    for (int i = 0; i < D; ++i) ss += double(x[t * stride + i]) * x[t * stride + i];
    const double inv = 1.0 / std::sqrt(ss / D + eps);
    for (int i = 0; i < D; ++i) want[t * D + i] = float(x[t * stride + i] * inv * w[i]);
  }
  auto norm = CreateCpuNormKernels();
  std::vector<float> out(T * D);
  norm->RmsNorm({.num_tokens = T,
                 .dim = D,
                 .eps = eps,
                 .x = {x.data(), stride},
                 .weight = w.data(),
                 .out = {out.data(), D}});
  EXPECT_LT(MaxRelError(out, want), 1e-6);

  auto inplace = x;
  norm->RmsNorm({.num_tokens = T,
                 .dim = D,
                 .eps = eps,
                 .x = {inplace.data(), stride},
                 .weight = w.data(),
                 .out = {inplace.data(), stride}});
  std::vector<float> got(T * D);
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < D; ++i) got[t * D + i] = inplace[t * stride + i];
  }
  EXPECT_LT(MaxRelError(got, want), 1e-6);
}

// Reference gated norm over `groups` groups of the full vector.
std::vector<float> GatedRef(int T, int d, int groups, const std::vector<float>& y,
                            const std::vector<float>& z, const std::vector<float>& w, float eps) {
  std::vector<float> out(T * d);
  const int gs = d / groups;
  for (int t = 0; t < T; ++t) {
    for (int g = 0; g < groups; ++g) {
      std::vector<double> v(gs);
      double ss = 0;
      for (int i = 0; i < gs; ++i) {
        const int idx = t * d + g * gs + i;
        v[i] = y[idx] * SiluRef(z[idx]);
        ss += v[i] * v[i];
      }
      const double inv = 1.0 / std::sqrt(ss / gs + eps);
      for (int i = 0; i < gs; ++i) out[t * d + g * gs + i] = float(v[i] * inv * w[g * gs + i]);
    }
  }
  return out;
}

TEST(GatedRmsNormTest, GroupedNormAfterGateMatchesReference) {
  const int T = 4, d = 32, eps_groups[] = {1, 2, 4};
  const auto y = RandomVector(T * d, 21), z = RandomVector(T * d, 22, -3, 3);
  const auto w = RandomVector(d, 23, 0.5f, 1.5f);
  auto norm = CreateCpuNormKernels();
  for (int groups : eps_groups) {
    const auto want = GatedRef(T, d, groups, y, z, w, 1e-6f);
    std::vector<float> out(T * d), ss(T * groups);
    GatedNormArgs args{.num_tokens = T,
                       .num_groups = groups,
                       .group_size = d / groups,
                       .norm_count = d / groups,
                       .eps = 1e-6f,
                       .y = {y.data(), d},
                       .z = {z.data(), d},
                       .weight = w.data(),
                       .out = {out.data(), d}};
    norm->GatedSumSquares(args, ss.data());
    norm->GatedNormApply(args, ss.data());
    EXPECT_LT(MaxRelError(out, want), 1e-5) << "groups=" << groups;
  }
}

TEST(GatedRmsNormTest, SplitGroupWithSummedStatisticsEqualsWholeGroup) {
  // Tensor parallel with G == 1: each of 2 ranks holds half of the vector; the
  // sum of squares is added across ranks before the apply step.
  const int T = 3, d = 40, half = d / 2;
  const auto y = RandomVector(T * d, 31), z = RandomVector(T * d, 32, -3, 3);
  const auto w = RandomVector(d, 33, 0.5f, 1.5f);
  const auto want = GatedRef(T, d, 1, y, z, w, 1e-5f);
  auto norm = CreateCpuNormKernels();
  std::vector<float> out(T * d);
  std::vector<float> ss[2] = {std::vector<float>(T), std::vector<float>(T)};
  GatedNormArgs shard[2];
  for (int r = 0; r < 2; ++r) {
    shard[r] = {.num_tokens = T,
                .num_groups = 1,
                .group_size = half,
                .norm_count = d,
                .eps = 1e-5f,
                .y = {y.data() + r * half, d},
                .z = {z.data() + r * half, d},
                .weight = w.data() + r * half,
                .out = {out.data() + r * half, d}};
    norm->GatedSumSquares(shard[r], ss[r].data());
  }
  for (int t = 0; t < T; ++t) ss[0][t] += ss[1][t];
  for (int r = 0; r < 2; ++r) norm->GatedNormApply(shard[r], ss[0].data());
  EXPECT_LT(MaxRelError(out, want), 1e-5);
}

// The norms with each instruction set (a width this CPU lacks falls back to a
// narrower one, which is then checked twice). Tolerances: the kernels sum
// squares in fp32 over 4 x W partial sums, the reference in fp64, so results
// differ by a few fp32 ulp (rel. 2e-6 allows ~16 ulp); the gated norm's silu
// uses a polynomial exp (~2 ulp), hence 1e-5 as in the tests above.
const simd::SimdWidth kWidths[] = {simd::SimdWidth::kAvx512, simd::SimdWidth::kAvx2,
                                   simd::SimdWidth::kPortable};

std::vector<float> RmsRef(int T, int D, int stride, const std::vector<float>& x,
                          const std::vector<float>& w, float eps) {
  std::vector<float> want(static_cast<size_t>(T) * D);
  for (int t = 0; t < T; ++t) {
    double ss = 0;
    for (int i = 0; i < D; ++i) ss += double(x[t * stride + i]) * x[t * stride + i];
    const double inv = 1.0 / std::sqrt(ss / D + eps);
    for (int i = 0; i < D; ++i) want[t * D + i] = float(x[t * stride + i] * inv * w[i]);
  }
  return want;
}

TEST(NormSimdTest, RmsNormEveryWidthMatchesReferenceForLengthsAroundTheVectorWidth) {
  for (const int D : {1, 3, 4, 8, 15, 16, 17, 63, 64, 65, 768, 771}) {
    const int T = 3, stride = D + 5;
    const auto x = RandomVector(T * stride, 100 + D, -4.0f, 4.0f);
    const auto w = RandomVector(D, 200 + D, 0.5f, 1.5f);
    const auto want = RmsRef(T, D, stride, x, w, 1e-5f);
    for (const simd::SimdWidth width : kWidths) {
      auto norm = CreateCpuNormKernels(width);
      std::vector<float> out(T * D, -1.0f);
      norm->RmsNorm({.num_tokens = T,
                     .dim = D,
                     .eps = 1e-5f,
                     .x = {x.data(), stride},
                     .weight = w.data(),
                     .out = {out.data(), D}});
      EXPECT_LT(MaxRelError(out, want), 2e-6) << "D=" << D << " lanes=" << simd::SimdLanes(width);
    }
  }
}

TEST(NormSimdTest, GatedNormEveryWidthMatchesReferenceIncludingSaturatedGates) {
  for (const int gs : {1, 5, 16, 33, 64, 100, 1536}) {
    for (const int groups : {1, 3}) {
      const int T = 2, d = gs * groups;
      const auto y = RandomVector(T * d, 300 + gs, -2.0f, 2.0f);
      // |z| up to 100: silu saturates to 0 and to z (exp's clamps).
      const auto z = RandomVector(T * d, 400 + gs, -100.0f, 100.0f);
      const auto w = RandomVector(d, 500 + gs, 0.5f, 1.5f);
      const auto want = GatedRef(T, d, groups, y, z, w, 1e-5f);
      for (const simd::SimdWidth width : kWidths) {
        auto norm = CreateCpuNormKernels(width);
        std::vector<float> out(T * d, -1.0f), ss(T * groups);
        const GatedNormArgs args{.num_tokens = T,
                                 .num_groups = groups,
                                 .group_size = gs,
                                 .norm_count = gs,
                                 .eps = 1e-5f,
                                 .y = {y.data(), d},
                                 .z = {z.data(), d},
                                 .weight = w.data(),
                                 .out = {out.data(), d}};
        norm->GatedSumSquares(args, ss.data());
        norm->GatedNormApply(args, ss.data());
        EXPECT_LT(MaxRelError(out, want), 1e-5)
            << "group_size=" << gs << " groups=" << groups << " lanes=" << simd::SimdLanes(width);
      }
    }
  }
}

// In place (out == y), as the model calls it, gives the bits of a separate output.
TEST(NormSimdTest, GatedNormInPlaceEqualsOutOfPlace) {
  const int T = 3, d = 100;
  const auto y = RandomVector(T * d, 61), z = RandomVector(T * d, 62, -3, 3);
  const auto w = RandomVector(d, 63, 0.5f, 1.5f);
  for (const simd::SimdWidth width : kWidths) {
    auto norm = CreateCpuNormKernels(width);
    std::vector<float> out(T * d), inplace = y, ss(T);
    GatedNormArgs args{.num_tokens = T,
                       .group_size = d,
                       .norm_count = d,
                       .y = {y.data(), d},
                       .z = {z.data(), d},
                       .weight = w.data(),
                       .out = {out.data(), d}};
    norm->GatedSumSquares(args, ss.data());
    norm->GatedNormApply(args, ss.data());
    args.y = {inplace.data(), d};
    args.out = {inplace.data(), d};
    norm->GatedSumSquares(args, ss.data());
    norm->GatedNormApply(args, ss.data());
    EXPECT_EQ(std::memcmp(out.data(), inplace.data(), out.size() * sizeof(float)), 0)
        << "lanes=" << simd::SimdLanes(width);
  }
}

TEST(RopeTest, PartialRotateHalfMatchesReferenceAndLeavesTailUntouched) {
  const int T = 6, hd = 16, rd = 8, hq = 4, hkv = 2;
  const float theta = 10000.0f;
  const std::vector<int32_t> pos = {0, 1, 5, 17, 300, 4095};
  const auto q0 = RandomVector(T * hq * hd, 41), k0 = RandomVector(T * hkv * hd, 42);
  auto ref = [&](std::vector<float> x, int heads) {
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < heads; ++h) {
        float* v = x.data() + (t * heads + h) * hd;
        std::vector<double> r(rd);
        for (int i = 0; i < rd; ++i) {
          const int fi = i % (rd / 2);
          const double ang = pos[t] * std::pow(double(theta), -2.0 * fi / rd);
          const double rot = i < rd / 2 ? -v[i + rd / 2] : v[i - rd / 2];  // rotate_half
          r[i] = v[i] * std::cos(ang) + rot * std::sin(ang);
        }
        for (int i = 0; i < rd; ++i) v[i] = float(r[i]);
      }
    }
    return x;
  };
  auto q = q0, k = k0;
  CreateCpuRopeKernel()->ApplyRope({.num_tokens = T,
                                    .positions = pos.data(),
                                    .head_dim = hd,
                                    .rotary_dim = rd,
                                    .theta = theta,
                                    .q = {q.data(), hq * hd},
                                    .num_q_heads = hq,
                                    .k = {k.data(), hkv * hd},
                                    .num_kv_heads = hkv});
  EXPECT_LT(MaxRelError(q, ref(q0, hq)), 1e-5);
  EXPECT_LT(MaxRelError(k, ref(k0, hkv)), 1e-5);
  for (int t = 0; t < T; ++t) {
    for (int i = rd; i < hd; ++i) EXPECT_EQ(q[t * hq * hd + i], q0[t * hq * hd + i]);
  }
}

// Rows of whole vectors and a tail at every width this CPU runs (AVX-512: 16
// lanes): each element within a few ulp of silu(g) * u, relu² exact.
TEST(ElementwiseTest, ActivationsMatchReferenceOverVectorsAndTails) {
  auto ew = CreateCpuElementwiseKernels();
  for (const int width : {1, 15, 16, 37, 1536}) {
    const int T = 2;
    const auto gu = RandomVector(T * 2 * width, 53 + width, -12, 12);
    std::vector<float> out(T * width), sq(T * width);
    ew->SiluMul(T, width, {gu.data(), 2 * width}, {out.data(), width});
    ew->Relu2(T, width, {gu.data(), 2 * width}, {sq.data(), width});
    for (int t = 0; t < T; ++t) {
      for (int i = 0; i < width; ++i) {
        const double g = gu[t * 2 * width + i], u = gu[t * 2 * width + width + i];
        const double want = SiluRef(g) * u;
        EXPECT_NEAR(out[t * width + i], want, 4e-7 * std::abs(want) + 1e-30)
            << "width " << width << " element " << i;
        const double r = std::max(0.0, g);
        EXPECT_EQ(sq[t * width + i], float(r * r)) << "width " << width << " element " << i;
      }
    }
  }
}

TEST(ElementwiseTest, SiluMulGatherAndAddMatchReference) {
  auto ew = CreateCpuElementwiseKernels();
  const int T = 3, I = 10;
  const auto gu = RandomVector(T * 2 * I, 51, -4, 4);
  std::vector<float> out(T * I), want(T * I);
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < I; ++i) {
      want[t * I + i] = float(SiluRef(gu[t * 2 * I + i]) * gu[t * 2 * I + I + i]);
    }
  }
  ew->SiluMul(T, I, {gu.data(), 2 * I}, {out.data(), I});
  EXPECT_LT(MaxRelError(out, want), 1e-6);

  const int V = 7, D = 5;
  const auto table = RandomVector(V * D, 52);
  const std::vector<int32_t> ids = {6, 0, 3, 3};
  std::vector<float> emb(ids.size() * D);
  ew->EmbeddingGather(ids.size(), ids.data(), table.data(), D, {emb.data(), D});
  for (size_t t = 0; t < ids.size(); ++t) {
    for (int i = 0; i < D; ++i) EXPECT_EQ(emb[t * D + i], table[ids[t] * D + i]);
  }

  auto y = emb;
  ew->AddRows(ids.size(), D, {table.data(), D}, {y.data(), D});
  for (size_t i = 0; i < y.size(); ++i) EXPECT_FLOAT_EQ(y[i], emb[i] + table[i]);
}

TEST(ElementwiseTest, EmbeddingGatherFromBf16TableWidensExactly) {
  auto ew = CreateCpuElementwiseKernels();
  const int V = 7, D = 13;
  const auto table = RandomVector(V * D, 53);
  std::vector<uint16_t> table16(table.size());
  for (size_t i = 0; i < table.size(); ++i) table16[i] = F32ToBf16(table[i]);
  const std::vector<int32_t> ids = {6, 0, 3, 3};
  std::vector<float> emb(ids.size() * (D + 2), -5.0f);
  ew->EmbeddingGatherBf16(ids.size(), ids.data(), table16.data(), D, {emb.data(), D + 2});
  for (size_t t = 0; t < ids.size(); ++t) {
    for (int i = 0; i < D; ++i) {
      EXPECT_EQ(emb[t * (D + 2) + i], Bf16ToF32(table16[ids[t] * D + i]));
    }
    EXPECT_EQ(emb[t * (D + 2) + D], -5.0f);  // the row stride's padding is untouched
  }
}

TEST(ElementwiseTest, Relu2ScaleAndScatterAddMatchReference) {
  auto ew = CreateCpuElementwiseKernels();
  const int T = 3, W = 6, D = 4;
  const auto x = RandomVector(T * 2 * W, 61, -2, 2);  // strided: the left half of each row
  std::vector<float> out(T * W);
  ew->Relu2(T, W, {x.data(), 2 * W}, {out.data(), W});
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < W; ++i) {
      const double r = std::max(0.0, double(x[t * 2 * W + i]));
      EXPECT_FLOAT_EQ(out[t * W + i], float(r * r));
    }
  }
  auto in_place = std::vector<float>(x.begin(), x.begin() + W);
  ew->Relu2(1, W, {in_place.data(), W}, {in_place.data(), W});
  for (int i = 0; i < W; ++i) EXPECT_FLOAT_EQ(in_place[i], out[i]);

  auto scaled = out;
  ew->ScaleRows(T, W, -0.5f, {scaled.data(), W});
  for (size_t i = 0; i < out.size(); ++i) EXPECT_FLOAT_EQ(scaled[i], -0.5f * out[i]);

  // Rows 2 and 0 of y receive weighted rows 0 and 1 of e; row 1 is untouched.
  const auto e = RandomVector(2 * D, 62);
  const auto y0 = RandomVector(T * D, 63);
  auto y = y0;
  const std::vector<int32_t> rows = {2, 0};
  const std::vector<float> weights = {0.25f, 2.0f};
  ew->ScatterAddRows(2, D, rows.data(), weights.data(), {e.data(), D}, {y.data(), D});
  for (int i = 0; i < D; ++i) {
    EXPECT_FLOAT_EQ(y[2 * D + i], y0[2 * D + i] + 0.25f * e[i]);
    EXPECT_FLOAT_EQ(y[0 * D + i], y0[0 * D + i] + 2.0f * e[D + i]);
    EXPECT_EQ(y[1 * D + i], y0[1 * D + i]);
  }
}

// Every kernel of this file over odd row counts, outputs concatenated: the
// same bits with no pool and with pools of 1..4 threads splitting every call
// (grain 1).
std::vector<float> RunAllPointwise(int64_t min_elems) {
  const int T = 7, D = 20, G = 2, W = 11, H = 2, KV = 1, HD = 8;
  auto norm = CreateCpuNormKernels(min_elems);
  auto rope = CreateCpuRopeKernel(min_elems);
  auto ew = CreateCpuElementwiseKernels(min_elems);
  std::vector<float> all;
  auto append = [&all](const std::vector<float>& v) { all.insert(all.end(), v.begin(), v.end()); };

  const auto x = RandomVector(T * D, 1);
  const auto w = RandomVector(D, 2, 0.5f, 1.5f);
  std::vector<float> out(T * D);
  norm->RmsNorm(
      {.num_tokens = T, .dim = D, .x = {x.data(), D}, .weight = w.data(), .out = {out.data(), D}});
  append(out);
  const auto z = RandomVector(T * D, 3);
  const GatedNormArgs gated{.num_tokens = T,
                            .num_groups = G,
                            .group_size = D / G,
                            .norm_count = D / G,
                            .y = {x.data(), D},
                            .z = {z.data(), D},
                            .weight = w.data(),
                            .out = {out.data(), D}};
  std::vector<float> sum_sq(T * G);
  norm->GatedSumSquares(gated, sum_sq.data());
  norm->GatedNormApply(gated, sum_sq.data());
  append(sum_sq);
  append(out);

  auto q = RandomVector(T * H * HD, 4), k = RandomVector(T * KV * HD, 5);
  std::vector<int32_t> positions(T);
  for (int t = 0; t < T; ++t) positions[t] = 3 * t + 1;
  rope->ApplyRope({.num_tokens = T,
                   .positions = positions.data(),
                   .head_dim = HD,
                   .rotary_dim = HD,
                   .q = {q.data(), H * HD},
                   .num_q_heads = H,
                   .k = {k.data(), KV * HD},
                   .num_kv_heads = KV});
  append(q);
  append(k);

  const auto gate_up = RandomVector(T * 2 * W, 6);
  std::vector<float> act(T * W);
  ew->SiluMul(T, W, {gate_up.data(), 2 * W}, {act.data(), W});
  append(act);
  ew->Relu2(T, W, {gate_up.data(), 2 * W}, {act.data(), W});
  append(act);
  ew->ScaleRows(T, W, 0.75f, {act.data(), W});
  append(act);
  const auto table = RandomVector(10 * D, 7);
  std::vector<uint16_t> table16(table.size());
  for (size_t i = 0; i < table.size(); ++i) table16[i] = F32ToBf16(table[i]);
  const std::vector<int32_t> ids = {3, 0, 9, 3, 5, 1, 8};
  ew->EmbeddingGather(T, ids.data(), table.data(), D, {out.data(), D});
  append(out);
  ew->EmbeddingGatherBf16(T, ids.data(), table16.data(), D, {out.data(), D});
  append(out);
  std::vector<float> y = x;
  ew->AddRows(T, D, {out.data(), D}, {y.data(), D});
  const std::vector<int32_t> rows = {6, 2, 0, 5, 1};
  const std::vector<float> weights = {0.5f, -1.0f, 2.0f, 0.25f, 1.5f};
  ew->ScatterAddRows(5, D, rows.data(), weights.data(), {x.data(), D}, {y.data(), D});
  append(y);
  return all;
}

TEST(PointwiseThreadsTest, EveryKernelGivesTheSameBitsOnAnyThreadCount) {
  const std::vector<float> want = RunAllPointwise(1);  // no pool bound: sequential
  for (int threads = 1; threads <= 4; ++threads) {
    IntraOpPool pool(threads);
    ScopedIntraOpPool bind(&pool);
    const std::vector<float> got = RunAllPointwise(1);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
        << threads << " threads";
  }
}

}  // namespace
}  // namespace hc::kernels
