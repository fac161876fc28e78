// CUDA Mamba2 SSD (see kernels/mamba2.h), fp32 state and arithmetic.
//
// Chunked scan: one thread block per (sequence, head) walks the sequence in
// tiles of kTile tokens (a tile is a chunk of the SSD form; mathematically the
// result does not depend on the chunk length, only the rounding does). The
// head's [P, N] state stays in shared memory for the whole sequence. Per tile
// of length L starting from state S0, with cs the inclusive cumsum of dt * A:
//   M[l, j] = (C[l] . B[j]) exp(cs[l] - cs[j]) dt[j]             (j <= l)
//   y[l]    = exp(cs[l]) (S0 C[l]) + sum_j M[l, j] x[j] + D x[l]
//   S       = exp(cs[L-1]) S0 + sum_j exp(cs[L-1] - cs[j]) dt[j] x[j] (outer) B[j]
// Exponents are differences of cumsums, so no factor overflows.
//
// Single-step update: one block per (sequence, head), a warp per state row.
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>

#include "kernels/cuda/cuda_util.cuh"

namespace hc::kernels::cuda {
namespace {

constexpr int kTile = 32;
constexpr int kScanThreads = 256;

struct SsmDev {
  int H, P, N, heads_per_group;
  const float* a_log;
  const float* d;
  const float* dt_bias;
  float dt_min, dt_max;
  float* state;
};

__device__ __forceinline__ float DtOf(const SsmDev& p, float raw, int h) {
  const float v = raw + p.dt_bias[h];
  const float sp = v > 20.0f ? v : log1pf(expf(v));
  return fminf(fmaxf(sp, p.dt_min), p.dt_max);
}

// Shared memory layout of the scan, in floats.
struct ScanSmem {
  int s, b, c, x, m, dt, cs, w, total;
  __host__ __device__ ScanSmem(int P, int N) {
    const int n_pad = N + 1;
    s = 0;
    b = s + P * n_pad;
    c = b + kTile * n_pad;
    x = c + kTile * n_pad;
    m = x + kTile * P;
    dt = m + kTile * (kTile + 1);
    cs = dt + kTile;
    w = cs + kTile;
    total = w + kTile;
  }
};

__global__ void __launch_bounds__(kScanThreads)
    SsdScanKernel(SsmDev p, const int32_t* qsl, const int32_t* slots, const float* x,
                  int64_t x_stride, const float* dt_raw, int64_t dt_stride, const float* bmat,
                  int64_t b_stride, const float* cmat, int64_t c_stride, float* y,
                  int64_t y_stride) {
  extern __shared__ float smem[];
  const int s = blockIdx.x, h = blockIdx.y;
  const int begin = qsl[s], end = qsl[s + 1];
  if (end <= begin) return;
  const int P = p.P, N = p.N, n_pad = N + 1;
  const int g = h / p.heads_per_group;
  const ScanSmem lay(P, N);
  float* S = smem + lay.s;
  float* Bt = smem + lay.b;
  float* Ct = smem + lay.c;
  float* Xt = smem + lay.x;
  float* M = smem + lay.m;
  float* dt = smem + lay.dt;
  float* cs = smem + lay.cs;
  float* w = smem + lay.w;
  const int tid = threadIdx.x, nt = blockDim.x;
  float* gstate = p.state + (static_cast<int64_t>(slots[s]) * p.H + h) * P * N;
  for (int i = tid; i < P * N; i += nt) S[(i / N) * n_pad + i % N] = gstate[i];
  const float a = -expf(p.a_log[h]);
  const float dh = p.d[h];
  for (int t0 = begin; t0 < end; t0 += kTile) {
    const int len = min(kTile, end - t0);
    __syncthreads();  // previous tile's readers are done
    for (int i = tid; i < len * N; i += nt) {
      const int j = i / N, n = i % N;
      Bt[j * n_pad + n] = bmat[static_cast<int64_t>(t0 + j) * b_stride + g * N + n];
      Ct[j * n_pad + n] = cmat[static_cast<int64_t>(t0 + j) * c_stride + g * N + n];
    }
    for (int i = tid; i < len * P; i += nt) {
      const int j = i / P, q = i % P;
      Xt[j * P + q] = x[static_cast<int64_t>(t0 + j) * x_stride + h * P + q];
    }
    if (tid < len) dt[tid] = DtOf(p, dt_raw[static_cast<int64_t>(t0 + tid) * dt_stride + h], h);
    __syncthreads();
    if (tid == 0) {
      float run = 0.0f;
      for (int j = 0; j < len; ++j) {
        run += dt[j] * a;
        cs[j] = run;
      }
    }
    __syncthreads();
    const float last = cs[len - 1];
    if (tid < len) w[tid] = expf(last - cs[tid]) * dt[tid];
    for (int i = tid; i < len * len; i += nt) {
      const int l = i / len, j = i % len;
      float v = 0.0f;
      if (j <= l) {
        const float* cl = Ct + l * n_pad;
        const float* bj = Bt + j * n_pad;
        for (int n = 0; n < N; ++n) v += cl[n] * bj[n];
        v *= expf(cs[l] - cs[j]) * dt[j];
      }
      M[l * (kTile + 1) + j] = v;
    }
    __syncthreads();
    for (int i = tid; i < len * P; i += nt) {
      const int l = i / P, q = i % P;
      const float* cl = Ct + l * n_pad;
      const float* sq = S + q * n_pad;
      float from_state = 0.0f;
      for (int n = 0; n < N; ++n) from_state += cl[n] * sq[n];
      float acc = from_state * expf(cs[l]) + dh * Xt[l * P + q];
      const float* ml = M + l * (kTile + 1);
      for (int j = 0; j <= l; ++j) acc += ml[j] * Xt[j * P + q];
      y[static_cast<int64_t>(t0 + l) * y_stride + h * P + q] = acc;
    }
    __syncthreads();  // all reads of S0 done
    const float e_total = expf(last);
    for (int i = tid; i < P * N; i += nt) {
      const int q = i / N, n = i % N;
      float acc = 0.0f;
      for (int j = 0; j < len; ++j) acc += w[j] * Xt[j * P + q] * Bt[j * n_pad + n];
      float* sv = S + q * n_pad + n;
      *sv = *sv * e_total + acc;
    }
  }
  __syncthreads();
  for (int i = tid; i < P * N; i += nt) gstate[i] = S[(i / N) * n_pad + i % N];
}

// Block (sequence b, head h); warp per state row q.
__global__ void StateUpdateKernel(SsmDev p, const int32_t* slots, const float* x, int64_t x_stride,
                                  const float* dt_raw, int64_t dt_stride, const float* bmat,
                                  int64_t b_stride, const float* cmat, int64_t c_stride, float* y,
                                  int64_t y_stride) {
  const int b = blockIdx.x, h = blockIdx.y;
  const int P = p.P, N = p.N;
  const int g = h / p.heads_per_group;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const float dt = DtOf(p, dt_raw[static_cast<int64_t>(b) * dt_stride + h], h);
  const float decay = expf(dt * -expf(p.a_log[h]));
  const float* xv = x + static_cast<int64_t>(b) * x_stride + h * P;
  const float* bv = bmat + static_cast<int64_t>(b) * b_stride + g * N;
  const float* cv = cmat + static_cast<int64_t>(b) * c_stride + g * N;
  float* st = p.state + (static_cast<int64_t>(slots[b]) * p.H + h) * P * N;
  for (int q = warp; q < P; q += warps) {
    const float dx = dt * xv[q];
    float* row = st + static_cast<int64_t>(q) * N;
    float acc = 0.0f;
    for (int n = lane; n < N; n += 32) {
      const float v = row[n] * decay + dx * bv[n];
      row[n] = v;
      acc += v * cv[n];
    }
    acc = WarpSum(acc);
    if (lane == 0) y[static_cast<int64_t>(b) * y_stride + h * P + q] = acc + p.d[h] * xv[q];
  }
}

class CudaMamba2 final : public Mamba2Kernels {
 public:
  explicit CudaMamba2(const CudaKernelOptions& o) : o_(o) {
    UseDevice(o.device);
    cudaDeviceGetAttribute(&max_smem_, cudaDevAttrMaxSharedMemoryPerBlockOptin, o.device);
  }

  void SsdChunkScanVarlen(const SsmParams& p, const VarlenBatch& batch, const int32_t* slots,
                          const SsmTensors& io) const override {
    if (batch.num_seqs <= 0 || p.num_heads <= 0) return;
    UseDevice(o_.device);
    const size_t bytes =
        static_cast<size_t>(ScanSmem(p.head_dim, p.state_size).total) * sizeof(float);
    HC_CHECK(bytes <= static_cast<size_t>(max_smem_))
        << "SSD scan needs " << bytes << " bytes of shared memory (P=" << p.head_dim
        << ", N=" << p.state_size << "), device allows " << max_smem_;
    AllowSharedMemory(SsdScanKernel, bytes, "SsdChunkScanVarlen");
    SsdScanKernel<<<dim3(batch.num_seqs, p.num_heads), kScanThreads, bytes, o_.stream>>>(
        Dev(p), batch.query_start_loc, slots, io.x.data, io.x.stride, io.dt.data, io.dt.stride,
        io.b.data, io.b.stride, io.c.data, io.c.stride, io.y.data, io.y.stride);
    CheckLaunch("SsdChunkScanVarlen");
  }

  void SelectiveStateUpdate(const SsmParams& p, int batch_size, const int32_t* slots,
                            const SsmTensors& io) const override {
    if (batch_size <= 0 || p.num_heads <= 0) return;
    UseDevice(o_.device);
    StateUpdateKernel<<<dim3(batch_size, p.num_heads), 128, 0, o_.stream>>>(
        Dev(p), slots, io.x.data, io.x.stride, io.dt.data, io.dt.stride, io.b.data, io.b.stride,
        io.c.data, io.c.stride, io.y.data, io.y.stride);
    CheckLaunch("SelectiveStateUpdate");
  }

 private:
  static SsmDev Dev(const SsmParams& p) {
    return {p.num_heads, p.head_dim, p.state_size, p.num_heads / p.num_groups,
            p.a_log,     p.d,        p.dt_bias,    p.dt_min,
            p.dt_max,    p.state};
  }

  const CudaKernelOptions o_;
  int max_smem_ = 48 * 1024;
};

}  // namespace

std::unique_ptr<Mamba2Kernels> CreateMamba2(const CudaKernelOptions& o) {
  return std::make_unique<CudaMamba2>(o);
}

}  // namespace hc::kernels::cuda
