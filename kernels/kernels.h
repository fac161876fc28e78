// The set of kernel families of one backend. The model takes a KernelSet and
// never names an implementation; kernels/cpu provides CreateCpuKernels(), a
// CUDA implementation provides the same families over device pointers.
#ifndef HC_KERNELS_KERNELS_H_
#define HC_KERNELS_KERNELS_H_

#include <memory>

#include "kernels/attention.h"
#include "kernels/conv1d.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/mamba2.h"
#include "kernels/norm.h"
#include "kernels/rope.h"

namespace hc::kernels {

// Owns one implementation of every family. Immutable after creation, shared
// (const) by all tensor-parallel ranks of a backend.
struct KernelSet {
  std::unique_ptr<const GemmKernel> gemm;
  std::unique_ptr<const NormKernels> norm;
  std::unique_ptr<const RopeKernel> rope;
  std::unique_ptr<const ElementwiseKernels> elementwise;
  std::unique_ptr<const Conv1dKernels> conv1d;
  std::unique_ptr<const Mamba2Kernels> mamba2;
  std::unique_ptr<const AttentionKernels> attention;
};

}  // namespace hc::kernels

#endif  // HC_KERNELS_KERNELS_H_
