// CreateParallelGemm: splitting a call over N on an intra-op pool gives the
// same bits for any thread count — the wrapped kernel's own bits when it is
// column-split invariant (every own path), fixed-chunk bits otherwise
// (OpenBLAS) — and splits the way its contract says.
#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/intra_op.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/half.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace hc::kernels {
namespace {

using testing::RandomVector;

struct Shape {
  int m, n, k;
};

// Odd shapes: n around and off the 16-column blocks, m on both sides of the
// small-m paths' limits, k with and without a vector tail.
const Shape kShapes[] = {{1, 1, 1},     {1, 17, 9},    {1, 100, 64}, {2, 33, 31},
                         {3, 257, 40},  {4, 48, 129},  {5, 63, 7},   {9, 31, 65},
                         {17, 161, 33}, {70, 95, 100}, {13, 16, 50}, {8, 129, 300}};

std::vector<CpuGemmImpl> Impls() {
  std::vector<CpuGemmImpl> impls = {CpuGemmImpl::kBlocked, CpuGemmImpl::kAuto};
  if (CpuHasAvx512()) impls.push_back(CpuGemmImpl::kAvx512);
  if (CpuHasOpenBlas()) impls.push_back(CpuGemmImpl::kOpenBlas);
  return impls;
}

std::vector<CpuBf16GemmImpl> Bf16Impls() {
  std::vector<CpuBf16GemmImpl> impls = {CpuBf16GemmImpl::kAuto, CpuBf16GemmImpl::kScalar};
  if (CpuHasAvx2Fma()) impls.push_back(CpuBf16GemmImpl::kWidenAvx2);
  if (CpuHasAvx512Bf16()) impls.push_back(CpuBf16GemmImpl::kAvx512Bf16);
  return impls;
}

// C (with padding columns) after one call; C starts from `init` so that the
// accumulate path is checked too.
template <typename B, typename Call>
std::vector<float> RunOnce(const Shape& s, const std::vector<float>& a, const std::vector<B>& b,
                           bool accumulate, const Call& call) {
  const int ldc = s.n + 3;
  std::vector<float> c = RandomVector(static_cast<size_t>(s.m) * ldc, 99);
  call(s, a.data(), s.k + 2, b.data(), s.k + 1, c.data(), ldc, accumulate);
  return c;
}

bool SameBits(const std::vector<float>& x, const std::vector<float>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

TEST(ParallelGemmTest, Fp32IsBitwiseTheSameForOneToFiveThreads) {
  for (const CpuGemmImpl impl : Impls()) {
    const bool invariant = CpuGemmSplitInvariant(impl);
    const std::unique_ptr<GemmKernel> plain = CreateCpuGemm(impl).value();
    const std::unique_ptr<GemmKernel> wrapped = CreateParallelGemm(
        CreateCpuGemm(impl).value(), {.min_macs = 1, .fp32_split_invariant = invariant});
    for (const Shape& s : kShapes) {
      const auto a = RandomVector(static_cast<size_t>(s.m) * (s.k + 2), 1 + s.m);
      const auto b = RandomVector(static_cast<size_t>(s.n) * (s.k + 1), 2 + s.n);
      for (const bool acc : {false, true}) {
        auto call = [](const GemmKernel& g) {
          return [&g](const Shape& s, const float* a, int lda, const float* b, int ldb, float* c,
                      int ldc, bool acc) {
            g.Gemm({.m = s.m,
                    .n = s.n,
                    .k = s.k,
                    .a = a,
                    .lda = lda,
                    .b = b,
                    .ldb = ldb,
                    .c = c,
                    .ldc = ldc,
                    .accumulate = acc});
          };
        };
        // The reference: the unwrapped kernel when the wrapper must match
        // it, else the wrapper with no pool bound (one thread).
        const std::vector<float> want = RunOnce(s, a, b, acc, call(invariant ? *plain : *wrapped));
        if (!invariant) {
          EXPECT_LT(testing::MaxRelError(want, RunOnce(s, a, b, acc, call(*plain))), 1e-5);
        }
        for (int threads = 1; threads <= 5; ++threads) {
          IntraOpPool pool(threads);
          ScopedIntraOpPool bind(&pool);
          EXPECT_TRUE(SameBits(RunOnce(s, a, b, acc, call(*wrapped)), want))
              << wrapped->name() << " m=" << s.m << " n=" << s.n << " k=" << s.k
              << " accumulate=" << acc << " threads=" << threads;
        }
      }
    }
  }
}

TEST(ParallelGemmTest, Bf16IsBitwiseTheWrappedKernelForOneToFiveThreads) {
  for (const CpuBf16GemmImpl impl : Bf16Impls()) {
    const std::unique_ptr<GemmKernel> plain = CreateCpuGemm(CpuGemmImpl::kBlocked, impl).value();
    const std::unique_ptr<GemmKernel> wrapped =
        CreateParallelGemm(CreateCpuGemm(CpuGemmImpl::kBlocked, impl).value(), {.min_macs = 1});
    for (const Shape& s : kShapes) {
      const auto a = RandomVector(static_cast<size_t>(s.m) * (s.k + 2), 3 + s.m);
      const auto bf = RandomVector(static_cast<size_t>(s.n) * (s.k + 1), 4 + s.n);
      std::vector<uint16_t> b(bf.size());
      std::transform(bf.begin(), bf.end(), b.begin(), F32ToBf16);
      for (const bool acc : {false, true}) {
        auto call = [](const GemmKernel& g) {
          return [&g](const Shape& s, const float* a, int lda, const uint16_t* b, int ldb, float* c,
                      int ldc, bool acc) {
            g.GemmBf16({.m = s.m,
                        .n = s.n,
                        .k = s.k,
                        .a = a,
                        .lda = lda,
                        .b = b,
                        .ldb = ldb,
                        .c = c,
                        .ldc = ldc,
                        .accumulate = acc});
          };
        };
        const std::vector<float> want = RunOnce(s, a, b, acc, call(*plain));
        for (int threads = 1; threads <= 5; ++threads) {
          IntraOpPool pool(threads);
          ScopedIntraOpPool bind(&pool);
          EXPECT_TRUE(SameBits(RunOnce(s, a, b, acc, call(*wrapped)), want))
              << CpuBf16GemmName(impl) << " m=" << s.m << " n=" << s.n << " k=" << s.k
              << " accumulate=" << acc << " threads=" << threads;
        }
      }
    }
  }
}

// Records the column ranges it is called on (C offsets from `base`).
class RecordingGemm final : public GemmKernel {
 public:
  explicit RecordingGemm(const float* base) : base_(base) {}
  void Gemm(const GemmArgs& g) const override { Record(g.c, g.n); }
  void GemmBf16(const GemmBf16Args& g) const override { Record(g.c, g.n); }
  const char* name() const override { return "recording"; }
  std::vector<std::pair<int64_t, int>> ranges() const {
    absl::MutexLock lock(&mu_);
    std::vector<std::pair<int64_t, int>> r = ranges_;
    std::sort(r.begin(), r.end());
    return r;
  }

 private:
  void Record(const float* c, int n) const {
    absl::MutexLock lock(&mu_);
    ranges_.emplace_back(c - base_, n);
  }
  const float* base_;
  mutable absl::Mutex mu_;
  mutable std::vector<std::pair<int64_t, int>> ranges_ ABSL_GUARDED_BY(mu_);
};

TEST(ParallelGemmTest, SplitsNIntoSixteenColumnAlignedRangesThatCoverItOnce) {
  std::vector<float> c(200);
  auto recording = std::make_unique<RecordingGemm>(c.data());
  const RecordingGemm* rec = recording.get();
  auto wrapped = CreateParallelGemm(std::move(recording), {.min_macs = 1});
  IntraOpPool pool(3);
  ScopedIntraOpPool bind(&pool);
  wrapped->Gemm({.m = 1, .n = 100, .k = 4, .c = c.data(), .ldc = 100});
  const auto ranges = rec->ranges();
  ASSERT_EQ(ranges.size(), 3u);  // 7 blocks of 16 over 3 threads
  int64_t next = 0;
  for (const auto& [begin, n] : ranges) {
    EXPECT_EQ(begin, next);
    EXPECT_EQ(begin % 16, 0);
    next = begin + n;
  }
  EXPECT_EQ(next, 100);
}

TEST(ParallelGemmTest, CallsBelowTheGrainOrWithoutAPoolRunWhole) {
  std::vector<float> c(256);
  auto recording = std::make_unique<RecordingGemm>(c.data());
  const RecordingGemm* rec = recording.get();
  // 16 columns x m 2 x k 8 = 256 MACs per block: a grain of 4096 MACs needs
  // 16 blocks per range, and n = 128 has 8, so the call stays whole.
  auto wrapped = CreateParallelGemm(std::move(recording), {.min_macs = 4096});
  wrapped->GemmBf16({.m = 2, .n = 128, .k = 8, .c = c.data(), .ldc = 128});  // no pool bound
  {
    IntraOpPool pool(4);
    ScopedIntraOpPool bind(&pool);
    wrapped->GemmBf16({.m = 2, .n = 128, .k = 8, .c = c.data(), .ldc = 128});
  }
  const auto ranges = rec->ranges();
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0], std::make_pair(int64_t{0}, 128));
  EXPECT_EQ(ranges[1], std::make_pair(int64_t{0}, 128));
}

TEST(ParallelGemmTest, KernelsThatAreNotSplitInvariantGetTheSameChunksOnAnyThreadCount) {
  std::vector<float> c(1000);
  std::vector<std::vector<std::pair<int64_t, int>>> seen;
  for (int threads : {0, 1, 2, 3, 5}) {  // 0: no pool bound
    auto recording = std::make_unique<RecordingGemm>(c.data());
    const RecordingGemm* rec = recording.get();
    auto wrapped =
        CreateParallelGemm(std::move(recording), {.min_macs = 1, .fp32_split_invariant = false});
    std::optional<IntraOpPool> pool;
    if (threads > 0) pool.emplace(threads);
    ScopedIntraOpPool bind(pool.has_value() ? &*pool : nullptr);
    wrapped->Gemm({.m = 8, .n = 999, .k = 4, .c = c.data(), .ldc = 999});
    seen.push_back(rec->ranges());
  }
  // 63 blocks of 16 in at most 12 chunks: 11 of 6 blocks (96 columns) and the rest.
  ASSERT_EQ(seen[0].size(), 11u);
  EXPECT_EQ(seen[0][0], std::make_pair(int64_t{0}, 96));
  EXPECT_EQ(seen[0][10], std::make_pair(int64_t{960}, 39));
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_EQ(seen[i], seen[0]) << "run " << i;
}

}  // namespace
}  // namespace hc::kernels
