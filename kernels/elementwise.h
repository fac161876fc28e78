// Element-wise family: SwiGLU activation, embedding gather, residual add.
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
};

}  // namespace hc::kernels

#endif  // HC_KERNELS_ELEMENTWISE_H_
