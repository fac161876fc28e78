// The fp32 <-> bf16 / fp16 scalar conversions (kernels/half.h) under the
// model's namespace, for the checkpoint code.
#ifndef HC_WORKER_MODEL_HALF_H_
#define HC_WORKER_MODEL_HALF_H_

#include "kernels/half.h"

namespace hc::model {

using kernels::Bf16ToF32;
using kernels::F16ToF32;
using kernels::F32ToBf16;
using kernels::F32ToF16;

}  // namespace hc::model

#endif  // HC_WORKER_MODEL_HALF_H_
