// Causal depthwise conv1d family (the Mamba2 xBC convolution).
//
// For channel c and width W, with the input sequence u being the conv state
// (the W - 1 previous raw inputs, oldest first) followed by the new tokens:
//   out[t, c] = act(bias[c] + sum_{k < W} weight[c, k] * u[t + k, c])
// where u[t + W - 1] is new token t (weight[c, W - 1] multiplies the newest
// input) and act is SiLU or identity.
//
// Conv state of one sequence: [conv_dim, W - 1] row-major, column W - 2 the
// newest input (the layout of worker/runtime/cache_memory.h). After the call
// it holds the last W - 1 raw inputs of (old state ++ new tokens), so a
// sequence can be continued from it in a later call.
#ifndef HC_KERNELS_CONV1D_H_
#define HC_KERNELS_CONV1D_H_

#include <cstdint>

#include "kernels/varlen.h"

namespace hc::kernels {

struct Conv1dParams {
  int conv_dim = 0;               // channels C
  int width = 4;                  // W >= 1
  const float* weight = nullptr;  // [C, W] (HF conv1d.weight [C, 1, W] squeezed)
  const float* bias = nullptr;    // [C] or nullptr
  bool apply_silu = true;
  // Conv states of all slots: [num_slots, C, W - 1]; sequence s uses slot slots[s].
  float* state = nullptr;
};

// Thread-safety: stateless; concurrent calls must use distinct slots.
class Conv1dKernels {
 public:
  virtual ~Conv1dKernels() = default;

  // Varlen prefill (any number of new tokens per sequence, decode included).
  // x, out: [total_tokens, C] with row strides; out must not alias x.
  // slots: [num_seqs], distinct.
  virtual void CausalConv1dVarlen(const Conv1dParams& params, const VarlenBatch& batch,
                                  const int32_t* slots, ConstRows x, Rows out) const = 0;

  // Single step: exactly one new token for each of `batch_size` sequences.
  // x, out: [batch_size, C]; slots: [batch_size], distinct.
  virtual void CausalConv1dUpdate(const Conv1dParams& params, int batch_size, const int32_t* slots,
                                  ConstRows x, Rows out) const = 0;
};

}  // namespace hc::kernels

#endif  // HC_KERNELS_CONV1D_H_
