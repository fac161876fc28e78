// Intra-op parallel GEMM: a wrapper that splits one call over N (see
// CreateParallelGemm in cpu_kernels.h).
#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "common/intra_op.h"
#include "kernels/cpu/cpu_kernels.h"

namespace hc::kernels {
namespace {

// Column block: ranges start at multiples of it, so each column keeps its
// position modulo 16 (the widest register tile of the CPU paths) and an
// inner kernel's tail handling sees the same columns as in an unsplit call.
constexpr int64_t kColumnBlock = 16;
// Chunks of a kernel that is not split-invariant: the chunking must not
// depend on the thread count, so it is fixed per shape; 12 balances 1, 2, 3,
// 4 and 6 threads exactly.
constexpr int64_t kMaxChunks = 12;

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The columns [j0, j1) of `g`. Args is GemmArgs or GemmBf16Args.
template <typename Args>
Args Columns(const Args& g, int64_t j0, int64_t j1) {
  Args part = g;
  part.n = static_cast<int>(j1 - j0);
  part.b = g.b + j0 * g.ldb;
  part.c = g.c + j0;
  return part;
}

template <typename Args, typename Run>
void SplitColumns(const Args& g, int64_t min_macs, bool invariant, const Run& run) {
  const int64_t blocks = CeilDiv(g.n, kColumnBlock);
  const int64_t block_macs = kColumnBlock * std::max(g.m, 1) * std::max(g.k, 1);
  const int64_t grain = std::max<int64_t>(1, CeilDiv(min_macs, block_macs));
  if (invariant) {
    if (IntraOpThreads() <= 1 || g.m <= 0 || blocks <= grain) return run(g);
    ParallelFor(blocks, grain, [&](int64_t b0, int64_t b1) {
      run(Columns(g, b0 * kColumnBlock, std::min<int64_t>(b1 * kColumnBlock, g.n)));
    });
    return;
  }
  // Fixed chunks of whole blocks, each at least the grain.
  const int64_t chunk_blocks = std::max(grain, CeilDiv(blocks, kMaxChunks));
  if (g.m <= 0 || blocks <= chunk_blocks) return run(g);
  const int64_t chunks = CeilDiv(blocks, chunk_blocks);
  ParallelFor(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t j0 = c * chunk_blocks * kColumnBlock;
      run(Columns(g, j0, std::min<int64_t>(j0 + chunk_blocks * kColumnBlock, g.n)));
    }
  });
}

class ParallelGemm final : public GemmKernel {
 public:
  ParallelGemm(std::unique_ptr<GemmKernel> inner, const ParallelGemmOptions& options)
      : inner_(std::move(inner)),
        options_(options),
        name_(std::string("parallel-n(") + inner_->name() + ")") {
    options_.min_macs = std::max<int64_t>(options_.min_macs, 1);
  }

  void Gemm(const GemmArgs& g) const override {
    SplitColumns(g, options_.min_macs, options_.fp32_split_invariant,
                 [this](const GemmArgs& part) { inner_->Gemm(part); });
  }
  void GemmBf16(const GemmBf16Args& g) const override {
    SplitColumns(g, options_.min_macs, options_.bf16_split_invariant,
                 [this](const GemmBf16Args& part) { inner_->GemmBf16(part); });
  }
  const char* name() const override { return name_.c_str(); }

 private:
  std::unique_ptr<GemmKernel> inner_;
  ParallelGemmOptions options_;
  std::string name_;
};

}  // namespace

std::unique_ptr<GemmKernel> CreateParallelGemm(std::unique_ptr<GemmKernel> inner,
                                               const ParallelGemmOptions& options) {
  return std::make_unique<ParallelGemm>(std::move(inner), options);
}

}  // namespace hc::kernels
