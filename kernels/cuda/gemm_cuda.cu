// cuBLAS GEMMs (see cuda_kernels.h) and the KernelSet factory.
//
// Row-major C[m, n] = A[m, k] B[n, k]^T is, read column-major, the n x m
// matrix C^T = B A^T: cuBLAS gets op(B) = T on the [k, n] column-major view of
// B (leading dimension ldb) and op(A) = N on the [k, m] view of A.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kernels/cuda/cuda_util.cuh"

namespace hc::kernels {
namespace cuda {
namespace {

__global__ void ConvertKernel(const float* src, uint16_t* dst, int64_t n, int to_bf16) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (to_bf16) {
      const __nv_bfloat16 v = __float2bfloat16_rn(src[i]);
      dst[i] = *reinterpret_cast<const uint16_t*>(&v);
    } else {
      const __half v = __float2half_rn(src[i]);
      dst[i] = *reinterpret_cast<const uint16_t*>(&v);
    }
  }
}

// dst[m, k] (contiguous) = bf16(src[m, k] with row stride lds), RNE.
__global__ void ConvertRowsKernel(const float* src, int64_t lds, int m, int k, uint16_t* dst) {
  const int64_t n = static_cast<int64_t>(m) * k;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const __nv_bfloat16 v = __float2bfloat16_rn(src[(i / k) * lds + i % k]);
    dst[i] = *reinterpret_cast<const uint16_t*>(&v);
  }
}

// C rows [0, m) of width n set to zero (k == 0 without accumulate).
__global__ void ZeroRowsKernel(float* c, int m, int n, int64_t ldc) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       i < static_cast<int64_t>(m) * n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    c[(i / n) * ldc + i % n] = 0.0f;
  }
}

const char* CublasName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "NOT_SUPPORTED";
    default:
      return "other cuBLAS error";
  }
}

class CublasGemm final : public CudaGemmKernel {
 public:
  CublasGemm(const CudaKernelOptions& o, cublasHandle_t handle) : o_(o), handle_(handle) {}
  ~CublasGemm() override {
    UseDevice(o_.device);
    absl::MutexLock lock(&mu_);
    if (scratch_ != nullptr) {
      cudaFreeAsync(scratch_, o_.stream);
      cudaStreamSynchronize(o_.stream);
    }
    cublasDestroy(handle_);
  }

  void Gemm(const GemmArgs& a) const override {
    if (a.m <= 0 || a.n <= 0) return;
    UseDevice(o_.device);
    if (a.k <= 0) {
      ZeroIfOverwrite(a.accumulate, a.c, a.m, a.n, a.ldc);
      return;
    }
    const float alpha = 1.0f, beta = a.accumulate ? 1.0f : 0.0f;
    absl::MutexLock lock(&mu_);
    const cublasStatus_t s = cublasSgemm(handle_, CUBLAS_OP_T, CUBLAS_OP_N, a.n, a.m, a.k, &alpha,
                                         a.b, static_cast<int>(a.ldb), a.a, static_cast<int>(a.lda),
                                         &beta, a.c, static_cast<int>(a.ldc));
    HC_CHECK(s == CUBLAS_STATUS_SUCCESS)
        << "cublasSgemm m=" << a.m << " n=" << a.n << " k=" << a.k << ": " << CublasName(s);
  }

  void MixedGemm(const MixedGemmArgs& a) const override {
    if (a.m <= 0 || a.n <= 0) return;
    UseDevice(o_.device);
    if (a.k <= 0) {
      ZeroIfOverwrite(a.accumulate, a.c, a.m, a.n, a.ldc);
      return;
    }
    const cudaDataType_t t = a.input_type == GemmInputType::kBF16  ? CUDA_R_16BF
                             : a.input_type == GemmInputType::kF16 ? CUDA_R_16F
                                                                   : CUDA_R_32F;
    const float alpha = 1.0f, beta = a.accumulate ? 1.0f : 0.0f;
    absl::MutexLock lock(&mu_);
    const cublasStatus_t s =
        cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, a.n, a.m, a.k, &alpha, a.b, t,
                     static_cast<int>(a.ldb), a.a, t, static_cast<int>(a.lda), &beta, a.c,
                     CUDA_R_32F, static_cast<int>(a.ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    HC_CHECK(s == CUBLAS_STATUS_SUCCESS)
        << "cublasGemmEx m=" << a.m << " n=" << a.n << " k=" << a.k << ": " << CublasName(s);
  }

  // Activations converted to bf16 into a device scratch (grown under mu_;
  // reuse is ordered by the one stream), then a bf16 x bf16 GemmEx with fp32
  // compute and fp32 C.
  void GemmBf16(const GemmBf16Args& a) const override {
    if (a.m <= 0 || a.n <= 0) return;
    UseDevice(o_.device);
    if (a.k <= 0) {
      ZeroIfOverwrite(a.accumulate, a.c, a.m, a.n, a.ldc);
      return;
    }
    absl::MutexLock lock(&mu_);
    const int64_t elems = static_cast<int64_t>(a.m) * a.k;
    if (scratch_elems_ < elems) {
      if (scratch_ != nullptr) cudaFreeAsync(scratch_, o_.stream);
      scratch_ = nullptr;
      const cudaError_t err =
          cudaMallocAsync(reinterpret_cast<void**>(&scratch_), sizeof(uint16_t) * elems, o_.stream);
      HC_CHECK(err == cudaSuccess)
          << "bf16 GEMM scratch of " << elems << " elements: " << cudaGetErrorString(err);
      scratch_elems_ = elems;
    }
    ConvertRowsKernel<<<std::min<int64_t>(CeilDiv(elems, 256), 4096), 256, 0, o_.stream>>>(
        a.a, a.lda, a.m, a.k, scratch_);
    CheckLaunch("ConvertRows");
    const float alpha = 1.0f, beta = a.accumulate ? 1.0f : 0.0f;
    const cublasStatus_t s =
        cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, a.n, a.m, a.k, &alpha, a.b, CUDA_R_16BF,
                     static_cast<int>(a.ldb), scratch_, CUDA_R_16BF, a.k, &beta, a.c, CUDA_R_32F,
                     static_cast<int>(a.ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    HC_CHECK(s == CUBLAS_STATUS_SUCCESS) << "cublasGemmEx (bf16 weights) m=" << a.m << " n=" << a.n
                                         << " k=" << a.k << ": " << CublasName(s);
  }

  const char* name() const override { return "cublas"; }

 private:
  void ZeroIfOverwrite(bool accumulate, float* c, int m, int n, int64_t ldc) const {
    if (accumulate) return;
    const int64_t total = static_cast<int64_t>(m) * n;
    ZeroRowsKernel<<<std::min<int64_t>(CeilDiv(total, 256), 4096), 256, 0, o_.stream>>>(c, m, n,
                                                                                        ldc);
    CheckLaunch("ZeroRows");
  }

  const CudaKernelOptions o_;
  // cuBLAS handles must not be used by two threads at once.
  mutable absl::Mutex mu_;
  cublasHandle_t handle_ ABSL_GUARDED_BY(mu_);
  mutable uint16_t* scratch_ ABSL_GUARDED_BY(mu_) = nullptr;  // [m, k] bf16 activations
  mutable int64_t scratch_elems_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace
}  // namespace cuda

int CudaDeviceCount(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (why != nullptr) *why = absl::StrCat("cudaGetDeviceCount: ", cudaGetErrorString(err));
    cudaGetLastError();  // clear the sticky-free error state
    return 0;
  }
  if (count == 0 && why != nullptr) *why = "cudaGetDeviceCount returned 0 devices";
  return count;
}

absl::StatusOr<std::unique_ptr<CudaGemmKernel>> CreateCudaGemm(const CudaKernelOptions& o) {
  std::string why;
  const int count = CudaDeviceCount(&why);
  if (o.device < 0 || o.device >= count) {
    return absl::UnavailableError(absl::StrCat("CUDA device ", o.device, " not available (", count,
                                               " devices", why.empty() ? "" : "; ", why, ")"));
  }
  cuda::UseDevice(o.device);
  cublasHandle_t handle = nullptr;
  cublasStatus_t s = cublasCreate(&handle);
  if (s != CUBLAS_STATUS_SUCCESS) {
    return absl::UnavailableError(absl::StrCat("cublasCreate: ", cuda::CublasName(s)));
  }
  // True fp32 for Sgemm (no TF32), so results match the CPU kernels to 1e-4.
  s = cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH);
  if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetStream(handle, o.stream);
  if (s != CUBLAS_STATUS_SUCCESS) {
    cublasDestroy(handle);
    return absl::InternalError(absl::StrCat("cuBLAS setup: ", cuda::CublasName(s)));
  }
  return std::unique_ptr<CudaGemmKernel>(new cuda::CublasGemm(o, handle));
}

absl::StatusOr<KernelSet> CreateCudaKernels(const CudaKernelOptions& o) {
  KernelSet set;
  auto gemm = CreateCudaGemm(o);
  if (!gemm.ok()) return gemm.status();
  set.gemm = std::move(gemm).value();
  set.norm = cuda::CreateNorm(o);
  set.rope = cuda::CreateRope(o);
  set.elementwise = cuda::CreateElementwise(o);
  set.conv1d = cuda::CreateConv1d(o);
  set.mamba2 = cuda::CreateMamba2(o);
  set.attention = cuda::CreateAttention(o);
  return set;
}

void CudaConvertF32(const float* src, uint16_t* dst, int64_t n, GemmInputType to,
                    CudaStream stream) {
  HC_CHECK(to != GemmInputType::kF32) << "CudaConvertF32 converts to bf16 or fp16 only";
  if (n <= 0) return;
  cuda::ConvertKernel<<<std::min<int64_t>(cuda::CeilDiv(n, 256), 4096), 256, 0, stream>>>(
      src, dst, n, to == GemmInputType::kBF16 ? 1 : 0);
  cuda::CheckLaunch("ConvertF32");
}

}  // namespace hc::kernels
