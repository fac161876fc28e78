// Element-wise family: SwiGLU and relu² activations, embedding (row) gather,
// residual add, row scaling and the weighted scatter-add of MoE expert outputs.
#ifndef HC_KERNELS_ELEMENTWISE_H_
#define HC_KERNELS_ELEMENTWISE_H_

#include <cstdint>

#include "kernels/varlen.h"

namespace hc::kernels {

// Thread-safety: stateless.
class ElementwiseKernels {
 public:
  virtual ~ElementwiseKernels() = default;

  // out[t, i] = silu(gate_up[t, i]) * gate_up[t, width + i] for i < width:
  // gate_up is the fused [num_tokens, 2 * width] output (gate | up).
  // out: [num_tokens, width]; must not alias gate_up unless the strides match
  // and out.data == gate_up.data (then it is computed in place, left half).
  virtual void SiluMul(int num_tokens, int width, ConstRows gate_up, Rows out) const = 0;

  // out[t, :] = table[ids[t], :]. table: [vocab, dim] row-major.
  // REQUIRES: 0 <= ids[t] < vocab (the caller validates token ids).
  virtual void EmbeddingGather(int num_tokens, const int32_t* ids, const float* table, int dim,
                               Rows out) const = 0;
  // Same from a bf16 table ([vocab, dim] bit patterns), widened to fp32.
  virtual void EmbeddingGatherBf16(int num_tokens, const int32_t* ids, const uint16_t* table,
                                   int dim, Rows out) const = 0;

  // y[t, :] += x[t, :], rows of `dim` elements.
  virtual void AddRows(int num_tokens, int dim, ConstRows x, Rows y) const = 0;

  // out[t, i] = max(x[t, i], 0)^2 for i < width (Nemotron-H's relu2). out may
  // alias x (same data and stride).
  virtual void Relu2(int num_tokens, int width, ConstRows x, Rows out) const = 0;

  // x[t, :] *= alpha, rows of `dim` elements (µP multipliers, logit scaling).
  virtual void ScaleRows(int num_tokens, int dim, float alpha, Rows x) const = 0;

  // y[rows[i], :] += weights[i] * x[i, :] for i < num_rows: adds an expert's
  // outputs into the tokens that chose it. REQUIRES: rows are distinct (so a
  // parallel implementation needs no atomics); rows and weights are backend
  // memory.
  virtual void ScatterAddRows(int num_rows, int dim, const int32_t* rows, const float* weights,
                              ConstRows x, Rows y) const = 0;
};

}  // namespace hc::kernels

#endif  // HC_KERNELS_ELEMENTWISE_H_
