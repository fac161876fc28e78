// <immintrin.h> for the CPU kernels, on x86-64 only.
#ifndef HC_KERNELS_CPU_X86_SIMD_H_
#define HC_KERNELS_CPU_X86_SIMD_H_

#if defined(__x86_64__)
// GCC 12 reports -Wuninitialized inside the 512-bit extract intrinsics that
// _mm512_reduce_add_ps uses (their _mm*_undefined_* pass-through operand).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

#endif  // HC_KERNELS_CPU_X86_SIMD_H_
