#include "kernels/profiled_kernels.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <utility>

namespace hc::kernels {
namespace {

using Clock = std::chrono::steady_clock;

// Adds the lifetime of the scope to one family.
class Timed {
 public:
  Timed(KernelProfile* profile, KernelFamily family)
      : profile_(profile), family_(family), start_(Clock::now()) {}
  ~Timed() {
    profile_->Add(
        family_,
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start_).count());
  }
  Timed(const Timed&) = delete;
  Timed& operator=(const Timed&) = delete;

 private:
  KernelProfile* profile_;
  KernelFamily family_;
  Clock::time_point start_;
};

class ProfiledGemm final : public GemmKernel {
 public:
  ProfiledGemm(std::unique_ptr<const GemmKernel> inner, KernelProfile* p)
      : inner_(std::move(inner)), p_(p) {}
  void Gemm(const GemmArgs& args) const override {
    Timed t(p_, KernelFamily::kGemm);
    inner_->Gemm(args);
  }
  void GemmBf16(const GemmBf16Args& args) const override {
    Timed t(p_, KernelFamily::kGemm);
    inner_->GemmBf16(args);
  }
  const char* name() const override { return inner_->name(); }

 private:
  std::unique_ptr<const GemmKernel> inner_;
  KernelProfile* p_;
};

class ProfiledNorm final : public NormKernels {
 public:
  ProfiledNorm(std::unique_ptr<const NormKernels> inner, KernelProfile* p)
      : inner_(std::move(inner)), p_(p) {}
  void RmsNorm(const RmsNormArgs& args) const override {
    Timed t(p_, KernelFamily::kNorm);
    inner_->RmsNorm(args);
  }
  void GatedSumSquares(const GatedNormArgs& args, float* sum_sq) const override {
    Timed t(p_, KernelFamily::kNorm);
    inner_->GatedSumSquares(args, sum_sq);
  }
  void GatedNormApply(const GatedNormArgs& args, const float* sum_sq) const override {
    Timed t(p_, KernelFamily::kNorm);
    inner_->GatedNormApply(args, sum_sq);
  }

 private:
  std::unique_ptr<const NormKernels> inner_;
  KernelProfile* p_;
};

class ProfiledRope final : public RopeKernel {
 public:
  ProfiledRope(std::unique_ptr<const RopeKernel> inner, KernelProfile* p)
      : inner_(std::move(inner)), p_(p) {}
  void ApplyRope(const RopeArgs& args) const override {
    Timed t(p_, KernelFamily::kRope);
    inner_->ApplyRope(args);
  }

 private:
  std::unique_ptr<const RopeKernel> inner_;
  KernelProfile* p_;
};

class ProfiledElementwise final : public ElementwiseKernels {
 public:
  ProfiledElementwise(std::unique_ptr<const ElementwiseKernels> inner, KernelProfile* p)
      : inner_(std::move(inner)), p_(p) {}
  void SiluMul(int num_tokens, int width, ConstRows gate_up, Rows out) const override {
    Timed t(p_, KernelFamily::kElementwise);
    inner_->SiluMul(num_tokens, width, gate_up, out);
  }
  void EmbeddingGather(int num_tokens, const int32_t* ids, const float* table, int dim,
                       Rows out) const override {
    Timed t(p_, KernelFamily::kElementwise);
    inner_->EmbeddingGather(num_tokens, ids, table, dim, out);
  }
  void EmbeddingGatherBf16(int num_tokens, const int32_t* ids, const uint16_t* table, int dim,
                           Rows out) const override {
    Timed t(p_, KernelFamily::kElementwise);
    inner_->EmbeddingGatherBf16(num_tokens, ids, table, dim, out);
  }
  void AddRows(int num_tokens, int dim, ConstRows x, Rows y) const override {
    Timed t(p_, KernelFamily::kElementwise);
    inner_->AddRows(num_tokens, dim, x, y);
  }
  void Relu2(int num_tokens, int width, ConstRows x, Rows out) const override {
    Timed t(p_, KernelFamily::kElementwise);
    inner_->Relu2(num_tokens, width, x, out);
  }
  void ScaleRows(int num_tokens, int dim, float alpha, Rows x) const override {
    Timed t(p_, KernelFamily::kElementwise);
    inner_->ScaleRows(num_tokens, dim, alpha, x);
  }
  void ScatterAddRows(int num_rows, int dim, const int32_t* rows, const float* weights, ConstRows x,
                      Rows y) const override {
    Timed t(p_, KernelFamily::kElementwise);
    inner_->ScatterAddRows(num_rows, dim, rows, weights, x, y);
  }

 private:
  std::unique_ptr<const ElementwiseKernels> inner_;
  KernelProfile* p_;
};

class ProfiledConv1d final : public Conv1dKernels {
 public:
  ProfiledConv1d(std::unique_ptr<const Conv1dKernels> inner, KernelProfile* p)
      : inner_(std::move(inner)), p_(p) {}
  void CausalConv1dVarlen(const Conv1dParams& params, const VarlenBatch& batch,
                          const int32_t* slots, ConstRows x, Rows out) const override {
    Timed t(p_, KernelFamily::kConv1d);
    inner_->CausalConv1dVarlen(params, batch, slots, x, out);
  }
  void CausalConv1dUpdate(const Conv1dParams& params, int batch_size, const int32_t* slots,
                          ConstRows x, Rows out) const override {
    Timed t(p_, KernelFamily::kConv1d);
    inner_->CausalConv1dUpdate(params, batch_size, slots, x, out);
  }

 private:
  std::unique_ptr<const Conv1dKernels> inner_;
  KernelProfile* p_;
};

class ProfiledMamba2 final : public Mamba2Kernels {
 public:
  ProfiledMamba2(std::unique_ptr<const Mamba2Kernels> inner, KernelProfile* p)
      : inner_(std::move(inner)), p_(p) {}
  void SsdChunkScanVarlen(const SsmParams& params, const VarlenBatch& batch, const int32_t* slots,
                          const SsmTensors& io) const override {
    Timed t(p_, KernelFamily::kSsdScan);
    inner_->SsdChunkScanVarlen(params, batch, slots, io);
  }
  void SelectiveStateUpdate(const SsmParams& params, int batch_size, const int32_t* slots,
                            const SsmTensors& io) const override {
    Timed t(p_, KernelFamily::kSsdUpdate);
    inner_->SelectiveStateUpdate(params, batch_size, slots, io);
  }

 private:
  std::unique_ptr<const Mamba2Kernels> inner_;
  KernelProfile* p_;
};

class ProfiledAttention final : public AttentionKernels {
 public:
  ProfiledAttention(std::unique_ptr<const AttentionKernels> inner, KernelProfile* p)
      : inner_(std::move(inner)), p_(p) {}
  void WriteKv(int num_tokens, const int32_t* slot_mapping, ConstRows k, ConstRows v,
               const PagedKvCache& cache) const override {
    Timed t(p_, KernelFamily::kKvWrite);
    inner_->WriteKv(num_tokens, slot_mapping, k, v, cache);
  }
  void PagedAttention(const AttentionArgs& args, const AttentionBatch& batch,
                      const PagedKvCache& cache) const override {
    Timed t(p_, KernelFamily::kAttention);
    inner_->PagedAttention(args, batch, cache);
  }

 private:
  std::unique_ptr<const AttentionKernels> inner_;
  KernelProfile* p_;
};

}  // namespace

const char* KernelFamilyName(KernelFamily family) {
  switch (family) {
    case KernelFamily::kGemm:
      return "gemm";
    case KernelFamily::kAttention:
      return "attention";
    case KernelFamily::kKvWrite:
      return "kv_write";
    case KernelFamily::kSsdScan:
      return "ssd_scan";
    case KernelFamily::kSsdUpdate:
      return "ssd_update";
    case KernelFamily::kConv1d:
      return "conv1d";
    case KernelFamily::kNorm:
      return "norm";
    case KernelFamily::kRope:
      return "rope";
    case KernelFamily::kElementwise:
      return "elementwise";
    case KernelFamily::kNumFamilies:
      break;
  }
  return "?";
}

void KernelProfile::Add(KernelFamily family, int64_t nanos) {
  const int i = static_cast<int>(family);
  calls_[i].fetch_add(1, std::memory_order_relaxed);
  nanos_[i].fetch_add(nanos, std::memory_order_relaxed);
}

KernelProfile::Totals KernelProfile::Snapshot() const {
  Totals t;
  for (size_t i = 0; i < t.size(); ++i) {
    t[i].calls = calls_[i].load(std::memory_order_relaxed);
    t[i].nanos = nanos_[i].load(std::memory_order_relaxed);
  }
  return t;
}

void KernelProfile::Reset() {
  for (size_t i = 0; i < calls_.size(); ++i) {
    calls_[i].store(0, std::memory_order_relaxed);
    nanos_[i].store(0, std::memory_order_relaxed);
  }
}

std::string KernelProfile::Format(const Totals& totals, int64_t wall_nanos) {
  int64_t sum = 0;
  for (const Entry& e : totals) sum += e.nanos;
  const int64_t base = wall_nanos > 0 ? wall_nanos : sum;
  std::string out;
  char line[128];
  auto add = [&](const char* name, int64_t calls, int64_t nanos) {
    std::snprintf(line, sizeof line, "%-12s %8lld calls %10.1f ms %5.1f%%\n", name,
                  static_cast<long long>(calls), nanos * 1e-6,
                  base > 0 ? 100.0 * static_cast<double>(nanos) / base : 0.0);
    out += line;
  };
  for (size_t i = 0; i < totals.size(); ++i) {
    add(KernelFamilyName(static_cast<KernelFamily>(i)), totals[i].calls, totals[i].nanos);
  }
  if (wall_nanos > 0) add("rest", 0, std::max<int64_t>(0, wall_nanos - sum));
  return out;
}

KernelProfile& ProcessKernelProfile() {
  static KernelProfile* profile = new KernelProfile();
  return *profile;
}

KernelSet ProfileKernels(KernelSet inner, KernelProfile* profile) {
  KernelSet set;
  set.gemm = std::make_unique<ProfiledGemm>(std::move(inner.gemm), profile);
  set.norm = std::make_unique<ProfiledNorm>(std::move(inner.norm), profile);
  set.rope = std::make_unique<ProfiledRope>(std::move(inner.rope), profile);
  set.elementwise = std::make_unique<ProfiledElementwise>(std::move(inner.elementwise), profile);
  set.conv1d = std::make_unique<ProfiledConv1d>(std::move(inner.conv1d), profile);
  set.mamba2 = std::make_unique<ProfiledMamba2>(std::move(inner.mamba2), profile);
  set.attention = std::make_unique<ProfiledAttention>(std::move(inner.attention), profile);
  return set;
}

}  // namespace hc::kernels
