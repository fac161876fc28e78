// Happens-before annotations for ThreadSanitizer builds (no-ops otherwise).
//
// gRPC guarantees that a reaction (OnReadDone, OnWriteDone, OnDone, an
// alarm's callback) runs after the operation that caused it was started, but
// the synchronisation that provides this lives in libgrpc, which is not
// instrumented, so TSan does not see it. Our code states that edge where it
// crosses into gRPC: HC_TSAN_RELEASE(x) right before starting an operation,
// HC_TSAN_ACQUIRE(x) first thing in the reaction, on the same address.
#ifndef HC_COMMON_TSAN_ANNOTATIONS_H_
#define HC_COMMON_TSAN_ANNOTATIONS_H_

#include "absl/base/config.h"

#ifdef ABSL_HAVE_THREAD_SANITIZER
#include <sanitizer/tsan_interface.h>
#define HC_TSAN_RELEASE(addr) __tsan_release(static_cast<void*>(addr))
#define HC_TSAN_ACQUIRE(addr) __tsan_acquire(static_cast<void*>(addr))
#else
#define HC_TSAN_RELEASE(addr) static_cast<void>(addr)
#define HC_TSAN_ACQUIRE(addr) static_cast<void>(addr)
#endif

#endif  // HC_COMMON_TSAN_ANNOTATIONS_H_
