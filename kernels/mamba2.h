// Mamba2 selective state space family (SSD), fp32.
//
// Per token t, head h (group g = h / (H / G)), with dt_raw from in_proj:
//   dt   = clamp(softplus(dt_raw[t, h] + dt_bias[h]), dt_min, dt_max)
//   A    = -exp(A_log[h])
//   S[h] = exp(dt * A) * S[h] + dt * x[t, h, :] (outer) B[t, g, :]     S: [P, N]
//   y[t, h, p] = sum_n S[h, p, n] * C[t, g, n] + D[h] * x[t, h, p]
// SSM state of one sequence: [H, P, N] fp32 row-major (cache_memory.h). Every
// call starts from the sequence's state in its slot and leaves the state
// after its last token there.
#ifndef HC_KERNELS_MAMBA2_H_
#define HC_KERNELS_MAMBA2_H_

#include <cstdint>
#include <limits>

#include "kernels/varlen.h"

namespace hc::kernels {

struct SsmParams {
  int num_heads = 0;               // H (local)
  int head_dim = 0;                // P
  int state_size = 0;              // N
  int num_groups = 1;              // G (local); REQUIRES num_heads % num_groups == 0
  const float* a_log = nullptr;    // [H]
  const float* d = nullptr;        // [H]
  const float* dt_bias = nullptr;  // [H]
  float dt_min = 0.0f;
  float dt_max = std::numeric_limits<float>::infinity();
  int chunk_size = 256;    // chunk length of the SSD scan (> 0)
  float* state = nullptr;  // [num_slots, H, P, N]
};

// Token-major inputs and output, each with its own row stride.
struct SsmTensors {
  ConstRows x;   // [T, H * P]  (conv output, SiLU applied)
  ConstRows dt;  // [T, H]      raw dt (before bias and softplus)
  ConstRows b;   // [T, G * N]
  ConstRows c;   // [T, G * N]
  Rows y;        // [T, H * P]  must not alias the inputs
};

// Thread-safety: stateless; concurrent calls must use distinct slots.
class Mamba2Kernels {
 public:
  virtual ~Mamba2Kernels() = default;

  // Chunked SSD scan over a varlen batch: each sequence is cut into chunks of
  // chunk_size tokens; within a chunk the output is computed in the quadratic
  // (attention-like) form, the state is carried between chunks. Equal to the
  // per-token recurrence up to float rounding. slots: [num_seqs], distinct.
  virtual void SsdChunkScanVarlen(const SsmParams& params, const VarlenBatch& batch,
                                  const int32_t* slots, const SsmTensors& io) const = 0;

  // One recurrence step for each of `batch_size` sequences (one token each).
  virtual void SelectiveStateUpdate(const SsmParams& params, int batch_size, const int32_t* slots,
                                    const SsmTensors& io) const = 0;
};

}  // namespace hc::kernels

#endif  // HC_KERNELS_MAMBA2_H_
