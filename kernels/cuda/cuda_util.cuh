// Internal helpers of kernels/cuda (CUDA translation units only).
#ifndef HC_KERNELS_CUDA_CUDA_UTIL_CUH_
#define HC_KERNELS_CUDA_CUDA_UTIL_CUH_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/logging.h"
#include "kernels/cuda/cuda_kernels.h"

namespace hc::kernels::cuda {

// Makes `device` current on the calling thread (tensor-parallel ranks call
// from threads started per step).
inline void UseDevice(int device) {
  int current = -1;
  if (cudaGetDevice(&current) != cudaSuccess || current != device) {
    const cudaError_t err = cudaSetDevice(device);
    HC_CHECK(err == cudaSuccess) << "cudaSetDevice(" << device << "): " << cudaGetErrorString(err);
  }
}

// Checks that the kernel just launched was accepted (configuration errors).
inline void CheckLaunch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  HC_CHECK(err == cudaSuccess) << what << " launch failed: " << cudaGetErrorString(err);
}

inline int CeilDiv(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

// Raises a kernel's dynamic shared memory limit to `bytes` (needed above 48 KB).
template <typename Kernel>
void AllowSharedMemory(Kernel kernel, size_t bytes, const char* what) {
  if (bytes <= 48 * 1024) return;
  const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(bytes));
  HC_CHECK(err == cudaSuccess) << what << ": " << bytes << " bytes of shared memory not available: "
                               << cudaGetErrorString(err);
}

// Element loads and stores of fp32 or bf16 (uint16_t bit patterns) tensors.
__device__ __forceinline__ float ToF32(float x) { return x; }
__device__ __forceinline__ float ToF32(uint16_t bf16) {
  return __uint_as_float(static_cast<uint32_t>(bf16) << 16);
}
__device__ __forceinline__ void StoreF32(float* dst, float x) { *dst = x; }
__device__ __forceinline__ void StoreF32(uint16_t* dst, float x) {
  const __nv_bfloat16 v = __float2bfloat16_rn(x);
  *dst = *reinterpret_cast<const uint16_t*>(&v);
}

__device__ __forceinline__ float SiluF(float x) { return x / (1.0f + expf(-x)); }

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets
// the result. `scratch` holds 32 floats of shared memory.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read by a previous BlockSum
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  float total = 0.0f;
  for (int w = 0; w < warps; ++w) total += scratch[w];
  return total;
}

// Index of the sequence owning token row `t`: the s with qsl[s] <= t < qsl[s + 1].
__device__ __forceinline__ int FindSeq(const int32_t* qsl, int num_seqs, int t) {
  int lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (qsl[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// Per-family factories (cuda_kernels.cu assembles the KernelSet).
std::unique_ptr<NormKernels> CreateNorm(const CudaKernelOptions& o);
std::unique_ptr<RopeKernel> CreateRope(const CudaKernelOptions& o);
std::unique_ptr<ElementwiseKernels> CreateElementwise(const CudaKernelOptions& o);
std::unique_ptr<Conv1dKernels> CreateConv1d(const CudaKernelOptions& o);
std::unique_ptr<Mamba2Kernels> CreateMamba2(const CudaKernelOptions& o);
std::unique_ptr<AttentionKernels> CreateAttention(const CudaKernelOptions& o);

}  // namespace hc::kernels::cuda

#endif  // HC_KERNELS_CUDA_CUDA_UTIL_CUH_
