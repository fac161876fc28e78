// CUDA causal depthwise conv1d (see kernels/conv1d.h).
//
// Varlen prefill runs as two kernels on the stream: (1) one thread per
// (token, channel) computes the output from the slot's old state and the new
// inputs; (2) one thread per (sequence, channel) rewrites the state as the
// last W - 1 inputs of old state ++ new tokens. Kernel (2) starts after (1)
// has finished reading the old state (stream order).
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>

#include "kernels/cuda/cuda_util.cuh"

namespace hc::kernels::cuda {
namespace {

constexpr int kMaxWidth = 16;  // W; Mamba2 uses 4

struct ConvDev {
  int conv_dim, width;
  const float* weight;
  const float* bias;
  int apply_silu;
  float* state;
};

// u(j) for token-local index j: j < hist is state column j, else new token j - hist.
__device__ __forceinline__ float ConvInput(const float* state_c, int hist, const float* x,
                                           int64_t x_stride, int begin, int c, int j) {
  return j < hist ? state_c[j] : x[static_cast<int64_t>(begin + j - hist) * x_stride + c];
}

// Grid (seqs * splits, channel blocks): block (s, z) computes tokens
// begin + z, begin + z + splits, ... of sequence s (token counts live on the
// device only, so the grid is sized without them).
__global__ void ConvVarlenOutKernel(ConvDev p, int splits, const int32_t* qsl, const int32_t* slots,
                                    const float* x, int64_t x_stride, float* out,
                                    int64_t out_stride) {
  const int s = blockIdx.x / splits, z = blockIdx.x % splits;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= p.conv_dim) return;
  const int begin = qsl[s], end = qsl[s + 1];
  const int hist = p.width - 1;
  const float* state_c = p.state + (static_cast<int64_t>(slots[s]) * p.conv_dim + c) * hist;
  const float* w = p.weight + static_cast<int64_t>(c) * p.width;
  const float bias = p.bias != nullptr ? p.bias[c] : 0.0f;
  for (int t = begin + z; t < end; t += splits) {
    const int local = t - begin;
    float acc = bias;
    for (int k = 0; k < p.width; ++k) {
      acc += w[k] * ConvInput(state_c, hist, x, x_stride, begin, c, local + k);
    }
    out[static_cast<int64_t>(t) * out_stride + c] = p.apply_silu ? SiluF(acc) : acc;
  }
}

// Grid (seqs, channel blocks).
__global__ void ConvVarlenStateKernel(ConvDev p, const int32_t* qsl, const int32_t* slots,
                                      const float* x, int64_t x_stride) {
  const int s = blockIdx.x;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= p.conv_dim) return;
  const int begin = qsl[s];
  const int len = qsl[s + 1] - begin;
  if (len <= 0) return;
  const int hist = p.width - 1;
  float* state_c = p.state + (static_cast<int64_t>(slots[s]) * p.conv_dim + c) * hist;
  float next[kMaxWidth];
  for (int j = 0; j < hist; ++j) next[j] = ConvInput(state_c, hist, x, x_stride, begin, c, len + j);
  for (int j = 0; j < hist; ++j) state_c[j] = next[j];
}

// Grid (batch, channel blocks): one new token per sequence.
__global__ void ConvUpdateKernel(ConvDev p, const int32_t* slots, const float* x, int64_t x_stride,
                                 float* out, int64_t out_stride) {
  const int b = blockIdx.x;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= p.conv_dim) return;
  const int hist = p.width - 1;
  float* st = p.state + (static_cast<int64_t>(slots[b]) * p.conv_dim + c) * hist;
  const float* w = p.weight + static_cast<int64_t>(c) * p.width;
  const float xv = x[static_cast<int64_t>(b) * x_stride + c];
  float acc = p.bias != nullptr ? p.bias[c] : 0.0f;
  for (int k = 0; k < hist; ++k) acc += w[k] * st[k];
  acc += w[hist] * xv;
  for (int k = 0; k + 1 < hist; ++k) st[k] = st[k + 1];
  if (hist > 0) st[hist - 1] = xv;
  out[static_cast<int64_t>(b) * out_stride + c] = p.apply_silu ? SiluF(acc) : acc;
}

class CudaConv1d final : public Conv1dKernels {
 public:
  explicit CudaConv1d(const CudaKernelOptions& o) : o_(o) {}

  void CausalConv1dVarlen(const Conv1dParams& p, const VarlenBatch& batch, const int32_t* slots,
                          ConstRows x, Rows out) const override {
    if (batch.num_seqs <= 0 || p.conv_dim <= 0) return;
    HC_CHECK(p.width >= 1 && p.width <= kMaxWidth)
        << "conv width " << p.width << " > " << kMaxWidth;
    UseDevice(o_.device);
    const ConvDev d = Dev(p);
    const int cblocks = CeilDiv(p.conv_dim, kThreads);
    const int splits = std::max(1, std::min(64, 2048 / batch.num_seqs));
    ConvVarlenOutKernel<<<dim3(batch.num_seqs * splits, cblocks), kThreads, 0, o_.stream>>>(
        d, splits, batch.query_start_loc, slots, x.data, x.stride, out.data, out.stride);
    CheckLaunch("CausalConv1dVarlen output");
    if (p.width > 1) {
      ConvVarlenStateKernel<<<dim3(batch.num_seqs, cblocks), kThreads, 0, o_.stream>>>(
          d, batch.query_start_loc, slots, x.data, x.stride);
      CheckLaunch("CausalConv1dVarlen state");
    }
  }

  void CausalConv1dUpdate(const Conv1dParams& p, int batch_size, const int32_t* slots, ConstRows x,
                          Rows out) const override {
    if (batch_size <= 0 || p.conv_dim <= 0) return;
    HC_CHECK(p.width >= 1 && p.width <= kMaxWidth)
        << "conv width " << p.width << " > " << kMaxWidth;
    UseDevice(o_.device);
    ConvUpdateKernel<<<dim3(batch_size, CeilDiv(p.conv_dim, kThreads)), kThreads, 0, o_.stream>>>(
        Dev(p), slots, x.data, x.stride, out.data, out.stride);
    CheckLaunch("CausalConv1dUpdate");
  }

 private:
  static constexpr int kThreads = 128;

  static ConvDev Dev(const Conv1dParams& p) {
    return {p.conv_dim, p.width, p.weight, p.bias, p.apply_silu ? 1 : 0, p.state};
  }

  const CudaKernelOptions o_;
};

}  // namespace

std::unique_ptr<Conv1dKernels> CreateConv1d(const CudaKernelOptions& o) {
  return std::make_unique<CudaConv1d>(o);
}

}  // namespace hc::kernels::cuda
