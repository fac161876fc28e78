// Batch descriptors shared by the kernel families. A batch packs the new
// tokens of several sequences row after row ("varlen"): the tokens of
// sequence s are rows [query_start_loc[s], query_start_loc[s + 1]) of every
// token-major tensor of the call. Prefill chunks and decode tokens mix freely
// (a decode token is a sequence with one row); empty sequences are allowed.
//
// Every pointer refers to memory of the backend the kernels run on (host memory
// for kernels/cpu, device memory for a CUDA implementation), including the
// integer index arrays.
#ifndef HC_KERNELS_VARLEN_H_
#define HC_KERNELS_VARLEN_H_

#include <cstdint>

namespace hc::kernels {

struct VarlenBatch {
  int num_seqs = 0;
  const int32_t* query_start_loc = nullptr;  // [num_seqs + 1], non-decreasing, [0] == 0
};

// A token-major matrix with a row stride (elements between consecutive
// tokens), so that a kernel can read a column range of a wider buffer such as
// the fused in_proj output without a copy.
struct ConstRows {
  const float* data = nullptr;
  int64_t stride = 0;
  const float* row(int64_t t) const { return data + t * stride; }
};
struct Rows {
  float* data = nullptr;
  int64_t stride = 0;
  float* row(int64_t t) const { return data + t * stride; }
};

}  // namespace hc::kernels

#endif  // HC_KERNELS_VARLEN_H_
