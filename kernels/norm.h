// Normalisation family (fp32): RMSNorm and the Mamba2 gated RMSNorm.
#ifndef HC_KERNELS_NORM_H_
#define HC_KERNELS_NORM_H_

#include "kernels/varlen.h"

namespace hc::kernels {

// out[t, :] = x[t, :] * rsqrt(mean(x[t, :]^2) + eps) * weight[:], for t < num_tokens.
// x, out: [num_tokens, dim] with row strides; weight [dim]. out may alias x.
struct RmsNormArgs {
  int num_tokens = 0;
  int dim = 0;
  float eps = 1e-5f;
  ConstRows x;
  const float* weight = nullptr;
  Rows out;
};

// Gated RMSNorm with the norm after the gate (Mamba2 `RMSNormGated`,
// norm_before_gate = false):
//   v = y * silu(z);  out = v * rsqrt(mean_over_group(v^2) + eps) * weight.
// The local vector of a token has num_groups * group_size elements (group g is
// elements [g * group_size, (g + 1) * group_size)). The mean divides by
// `norm_count`, the size of the whole group, which is larger than group_size
// when a group is split over tensor-parallel ranks (G == 1, tp > 1): then the
// caller all-reduces `sum_sq` between the two steps.
struct GatedNormArgs {
  int num_tokens = 0;
  int num_groups = 1;
  int group_size = 0;  // local elements per group
  int norm_count = 0;  // elements the mean runs over (== group_size without TP split)
  float eps = 1e-5f;
  ConstRows y;                    // [num_tokens, num_groups * group_size]
  ConstRows z;                    // same shape (the gate)
  const float* weight = nullptr;  // [num_groups * group_size], the local shard
  Rows out;                       // same shape; may alias y
};

// Thread-safety: stateless; concurrent calls on distinct outputs are safe.
class NormKernels {
 public:
  virtual ~NormKernels() = default;
  virtual void RmsNorm(const RmsNormArgs& args) const = 0;
  // sum_sq[t * num_groups + g] = sum over the local elements of group g of
  // (y * silu(z))^2. sum_sq: [num_tokens, num_groups], contiguous.
  virtual void GatedSumSquares(const GatedNormArgs& args, float* sum_sq) const = 0;
  // Writes `out` from y, z and the (possibly all-reduced) sum_sq.
  virtual void GatedNormApply(const GatedNormArgs& args, const float* sum_sq) const = 0;
};

}  // namespace hc::kernels

#endif  // HC_KERNELS_NORM_H_
