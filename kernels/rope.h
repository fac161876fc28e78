// Rotary position embedding family: partial NeoX-style ("rotate half") RoPE.
//
// For every head, the first rotary_dim elements are rotated and the rest pass
// through unchanged. With half = rotary_dim / 2 and i < half:
//   inv_freq_i = theta^(-2 i / rotary_dim),  a = position * inv_freq_i
//   x'[i]        = x[i] * cos(a) - x[i + half] * sin(a)
//   x'[i + half] = x[i + half] * cos(a) + x[i] * sin(a)
// (Hugging Face `apply_rotary_pos_emb` with rotate_half on the first
// rotary_dim dims, as Bamba uses with partial_rotary_factor.)
#ifndef HC_KERNELS_ROPE_H_
#define HC_KERNELS_ROPE_H_

#include <cstdint>

#include "kernels/varlen.h"

namespace hc::kernels {

struct RopeArgs {
  int num_tokens = 0;
  const int32_t* positions = nullptr;  // [num_tokens], absolute position of each token
  int head_dim = 0;
  int rotary_dim = 0;  // even, <= head_dim
  float theta = 10000.0f;
  Rows q;  // [num_tokens, num_q_heads * head_dim], in place
  int num_q_heads = 0;
  Rows k;  // [num_tokens, num_kv_heads * head_dim], in place
  int num_kv_heads = 0;
};

// Thread-safety: stateless.
class RopeKernel {
 public:
  virtual ~RopeKernel() = default;
  virtual void ApplyRope(const RopeArgs& args) const = 0;
};

}  // namespace hc::kernels

#endif  // HC_KERNELS_ROPE_H_
