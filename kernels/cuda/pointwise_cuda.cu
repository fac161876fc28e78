// CUDA norms, RoPE and element-wise kernels (fp32). Same contracts as
// kernels/norm.h, rope.h, elementwise.h; reductions accumulate in fp32 with a
// tree order (the CPU kernels use fp64), well inside the 1e-4 tolerance.
#include <cuda_runtime.h>

#include <memory>

#include "kernels/cuda/cuda_util.cuh"

namespace hc::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// One block per token.
__global__ void RmsNormKernel(int dim, float eps, const float* x, int64_t x_stride,
                              const float* weight, float* out, int64_t out_stride) {
  __shared__ float scratch[32];
  const float* xr = x + blockIdx.x * x_stride;
  float* o = out + blockIdx.x * out_stride;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
  ss = BlockSum(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / dim + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = xr[i] * inv * weight[i];
}

// Block (token, group).
__global__ void GatedSumSquaresKernel(int num_groups, int group_size, const float* y,
                                      int64_t y_stride, const float* z, int64_t z_stride,
                                      float* sum_sq) {
  __shared__ float scratch[32];
  const int t = blockIdx.x, g = blockIdx.y;
  const float* yr = y + t * y_stride + static_cast<int64_t>(g) * group_size;
  const float* zr = z + t * z_stride + static_cast<int64_t>(g) * group_size;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < group_size; i += blockDim.x) {
    const float v = yr[i] * SiluF(zr[i]);
    ss += v * v;
  }
  ss = BlockSum(ss, scratch);
  if (threadIdx.x == 0) sum_sq[static_cast<int64_t>(t) * num_groups + g] = ss;
}

__global__ void GatedNormApplyKernel(int num_groups, int group_size, int norm_count, float eps,
                                     const float* y, int64_t y_stride, const float* z,
                                     int64_t z_stride, const float* weight, const float* sum_sq,
                                     float* out, int64_t out_stride) {
  const int t = blockIdx.x, g = blockIdx.y;
  const int64_t off = static_cast<int64_t>(g) * group_size;
  const float* yr = y + t * y_stride + off;
  const float* zr = z + t * z_stride + off;
  float* o = out + t * out_stride + off;
  const float inv =
      1.0f / sqrtf(sum_sq[static_cast<int64_t>(t) * num_groups + g] / norm_count + eps);
  for (int i = threadIdx.x; i < group_size; i += blockDim.x) {
    o[i] = yr[i] * SiluF(zr[i]) * inv * weight[off + i];
  }
}

class CudaNorm final : public NormKernels {
 public:
  explicit CudaNorm(const CudaKernelOptions& o) : o_(o) {}
  void RmsNorm(const RmsNormArgs& a) const override {
    if (a.num_tokens <= 0 || a.dim <= 0) return;
    UseDevice(o_.device);
    RmsNormKernel<<<a.num_tokens, kThreads, 0, o_.stream>>>(a.dim, a.eps, a.x.data, a.x.stride,
                                                            a.weight, a.out.data, a.out.stride);
    CheckLaunch("RmsNorm");
  }
  void GatedSumSquares(const GatedNormArgs& a, float* sum_sq) const override {
    if (a.num_tokens <= 0 || a.num_groups <= 0) return;
    UseDevice(o_.device);
    GatedSumSquaresKernel<<<dim3(a.num_tokens, a.num_groups), kThreads, 0, o_.stream>>>(
        a.num_groups, a.group_size, a.y.data, a.y.stride, a.z.data, a.z.stride, sum_sq);
    CheckLaunch("GatedSumSquares");
  }
  void GatedNormApply(const GatedNormArgs& a, const float* sum_sq) const override {
    if (a.num_tokens <= 0 || a.num_groups <= 0) return;
    UseDevice(o_.device);
    GatedNormApplyKernel<<<dim3(a.num_tokens, a.num_groups), kThreads, 0, o_.stream>>>(
        a.num_groups, a.group_size, a.norm_count, a.eps, a.y.data, a.y.stride, a.z.data, a.z.stride,
        a.weight, sum_sq, a.out.data, a.out.stride);
    CheckLaunch("GatedNormApply");
  }

 private:
  const CudaKernelOptions o_;
};

// One block per token; threads over (head, i < half) of q then k.
__global__ void RopeKernelImpl(const int32_t* positions, int head_dim, int rotary_dim, float theta,
                               float* q, int64_t q_stride, int num_q_heads, float* k,
                               int64_t k_stride, int num_kv_heads) {
  const int t = blockIdx.x;
  const int half = rotary_dim / 2;
  const float pos = static_cast<float>(positions[t]);
  const int total = (num_q_heads + num_kv_heads) * half;
  for (int idx = threadIdx.x; idx < total; idx += blockDim.x) {
    const int head = idx / half, i = idx % half;
    float* base = head < num_q_heads
                      ? q + t * q_stride + static_cast<int64_t>(head) * head_dim
                      : k + t * k_stride + static_cast<int64_t>(head - num_q_heads) * head_dim;
    // Same rounding steps as the CPU kernel: inverse frequency in fp64, angle in fp32.
    const float inv_freq =
        static_cast<float>(1.0 / pow(static_cast<double>(theta), (2.0 * i) / rotary_dim));
    const float angle = pos * inv_freq;
    const float c = cosf(angle), s = sinf(angle);
    const float x1 = base[i], x2 = base[i + half];
    base[i] = x1 * c - x2 * s;
    base[i + half] = x2 * c + x1 * s;
  }
}

class CudaRope final : public RopeKernel {
 public:
  explicit CudaRope(const CudaKernelOptions& o) : o_(o) {}
  void ApplyRope(const RopeArgs& a) const override {
    if (a.num_tokens <= 0 || a.rotary_dim / 2 == 0) return;
    UseDevice(o_.device);
    RopeKernelImpl<<<a.num_tokens, 128, 0, o_.stream>>>(
        a.positions, a.head_dim, a.rotary_dim, a.theta, a.q.data, a.q.stride, a.num_q_heads,
        a.k.data, a.k.stride, a.num_kv_heads);
    CheckLaunch("ApplyRope");
  }

 private:
  const CudaKernelOptions o_;
};

// Grid (tokens, column blocks).
__global__ void SiluMulKernel(int width, const float* gate_up, int64_t gu_stride, float* out,
                              int64_t out_stride) {
  const int t = blockIdx.x;
  const int i = blockIdx.y * blockDim.x + threadIdx.x;
  if (i >= width) return;
  const float* g = gate_up + t * gu_stride;
  const float gate = g[i], up = g[width + i];
  out[t * out_stride + i] = SiluF(gate) * up;
}

// T: float or uint16_t (bf16 bits).
template <typename T>
__global__ void EmbeddingKernel(const int32_t* ids, const T* table, int dim, float* out,
                                int64_t out_stride) {
  const int t = blockIdx.x;
  const int i = blockIdx.y * blockDim.x + threadIdx.x;
  if (i >= dim) return;
  out[t * out_stride + i] = ToF32(table[static_cast<int64_t>(ids[t]) * dim + i]);
}

__global__ void AddRowsKernel(int dim, const float* x, int64_t x_stride, float* y,
                              int64_t y_stride) {
  const int t = blockIdx.x;
  const int i = blockIdx.y * blockDim.x + threadIdx.x;
  if (i >= dim) return;
  y[t * y_stride + i] += x[t * x_stride + i];
}

__global__ void Relu2Kernel(int width, const float* x, int64_t x_stride, float* out,
                            int64_t out_stride) {
  const int t = blockIdx.x;
  const int i = blockIdx.y * blockDim.x + threadIdx.x;
  if (i >= width) return;
  const float r = fmaxf(x[t * x_stride + i], 0.0f);
  out[t * out_stride + i] = r * r;
}

__global__ void ScaleRowsKernel(int dim, float alpha, float* x, int64_t x_stride) {
  const int t = blockIdx.x;
  const int i = blockIdx.y * blockDim.x + threadIdx.x;
  if (i >= dim) return;
  x[t * x_stride + i] *= alpha;
}

// Grid (rows, column blocks); rows are distinct, so no two blocks write one element.
__global__ void ScatterAddRowsKernel(int dim, const int32_t* rows, const float* weights,
                                     const float* x, int64_t x_stride, float* y, int64_t y_stride) {
  const int r = blockIdx.x;
  const int i = blockIdx.y * blockDim.x + threadIdx.x;
  if (i >= dim) return;
  y[static_cast<int64_t>(rows[r]) * y_stride + i] += weights[r] * x[r * x_stride + i];
}

class CudaElementwise final : public ElementwiseKernels {
 public:
  explicit CudaElementwise(const CudaKernelOptions& o) : o_(o) {}
  void SiluMul(int num_tokens, int width, ConstRows gate_up, Rows out) const override {
    if (num_tokens <= 0 || width <= 0) return;
    UseDevice(o_.device);
    SiluMulKernel<<<dim3(num_tokens, CeilDiv(width, kThreads)), kThreads, 0, o_.stream>>>(
        width, gate_up.data, gate_up.stride, out.data, out.stride);
    CheckLaunch("SiluMul");
  }
  void EmbeddingGather(int num_tokens, const int32_t* ids, const float* table, int dim,
                       Rows out) const override {
    if (num_tokens <= 0 || dim <= 0) return;
    UseDevice(o_.device);
    EmbeddingKernel<<<dim3(num_tokens, CeilDiv(dim, kThreads)), kThreads, 0, o_.stream>>>(
        ids, table, dim, out.data, out.stride);
    CheckLaunch("EmbeddingGather");
  }
  void EmbeddingGatherBf16(int num_tokens, const int32_t* ids, const uint16_t* table, int dim,
                           Rows out) const override {
    if (num_tokens <= 0 || dim <= 0) return;
    UseDevice(o_.device);
    EmbeddingKernel<<<dim3(num_tokens, CeilDiv(dim, kThreads)), kThreads, 0, o_.stream>>>(
        ids, table, dim, out.data, out.stride);
    CheckLaunch("EmbeddingGatherBf16");
  }
  void AddRows(int num_tokens, int dim, ConstRows x, Rows y) const override {
    if (num_tokens <= 0 || dim <= 0) return;
    UseDevice(o_.device);
    AddRowsKernel<<<dim3(num_tokens, CeilDiv(dim, kThreads)), kThreads, 0, o_.stream>>>(
        dim, x.data, x.stride, y.data, y.stride);
    CheckLaunch("AddRows");
  }
  void Relu2(int num_tokens, int width, ConstRows x, Rows out) const override {
    if (num_tokens <= 0 || width <= 0) return;
    UseDevice(o_.device);
    Relu2Kernel<<<dim3(num_tokens, CeilDiv(width, kThreads)), kThreads, 0, o_.stream>>>(
        width, x.data, x.stride, out.data, out.stride);
    CheckLaunch("Relu2");
  }
  void ScaleRows(int num_tokens, int dim, float alpha, Rows x) const override {
    if (num_tokens <= 0 || dim <= 0) return;
    UseDevice(o_.device);
    ScaleRowsKernel<<<dim3(num_tokens, CeilDiv(dim, kThreads)), kThreads, 0, o_.stream>>>(
        dim, alpha, x.data, x.stride);
    CheckLaunch("ScaleRows");
  }
  void ScatterAddRows(int num_rows, int dim, const int32_t* rows, const float* weights, ConstRows x,
                      Rows y) const override {
    if (num_rows <= 0 || dim <= 0) return;
    UseDevice(o_.device);
    ScatterAddRowsKernel<<<dim3(num_rows, CeilDiv(dim, kThreads)), kThreads, 0, o_.stream>>>(
        dim, rows, weights, x.data, x.stride, y.data, y.stride);
    CheckLaunch("ScatterAddRows");
  }

 private:
  const CudaKernelOptions o_;
};

}  // namespace

std::unique_ptr<NormKernels> CreateNorm(const CudaKernelOptions& o) {
  return std::make_unique<CudaNorm>(o);
}
std::unique_ptr<RopeKernel> CreateRope(const CudaKernelOptions& o) {
  return std::make_unique<CudaRope>(o);
}
std::unique_ptr<ElementwiseKernels> CreateElementwise(const CudaKernelOptions& o) {
  return std::make_unique<CudaElementwise>(o);
}

}  // namespace hc::kernels::cuda
