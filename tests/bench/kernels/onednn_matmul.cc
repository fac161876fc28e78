#include "tests/bench/kernels/onednn_matmul.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

namespace hc::kernels::bench {

struct OneDnnMatmul::State {
  dnnl_engine_t engine = nullptr;
  dnnl_stream_t stream = nullptr;
  dnnl_primitive_t prim = nullptr;
  dnnl_memory_t a = nullptr, b = nullptr, c = nullptr;
  ~State() {
    for (dnnl_memory_t mem : {a, b, c}) {
      if (mem != nullptr) dnnl_memory_destroy(mem);
    }
    if (prim != nullptr) dnnl_primitive_destroy(prim);
    if (stream != nullptr) dnnl_stream_destroy(stream);
    if (engine != nullptr) dnnl_engine_destroy(engine);
  }
};

std::unique_ptr<OneDnnMatmul> OneDnnMatmul::Create(int m, int n, int k, bool bf16,
                                                   std::string* why) {
  // Debian's oneDNN runs on OpenMP, whose pool size is read from the
  // environment before main; single-threaded like every kernel compared.
  omp_set_num_threads(1);
  std::unique_ptr<OneDnnMatmul> mm(new OneDnnMatmul);
  mm->state_ = std::make_unique<State>();
  State& s = *mm->state_;
  const dnnl_data_type_t in = bf16 ? dnnl_bf16 : dnnl_f32;
  const dnnl_dims_t a_dims = {m, k}, a_strides = {k, 1};
  const dnnl_dims_t b_dims = {k, n}, b_strides = {1, k};  // B[n][k] read as W[k][n]
  const dnnl_dims_t c_dims = {m, n}, c_strides = {n, 1};
  dnnl_memory_desc_t a_md, b_md, c_md;
  dnnl_matmul_desc_t desc;
  dnnl_primitive_desc_t pd = nullptr;
  if (dnnl_engine_create(&s.engine, dnnl_cpu, 0) != dnnl_success ||
      dnnl_stream_create(&s.stream, s.engine, dnnl_stream_default_flags) != dnnl_success ||
      dnnl_memory_desc_init_by_strides(&a_md, 2, a_dims, in, a_strides) != dnnl_success ||
      dnnl_memory_desc_init_by_strides(&b_md, 2, b_dims, in, b_strides) != dnnl_success ||
      dnnl_memory_desc_init_by_strides(&c_md, 2, c_dims, dnnl_f32, c_strides) != dnnl_success ||
      dnnl_matmul_desc_init(&desc, &a_md, &b_md, nullptr, &c_md) != dnnl_success ||
      dnnl_primitive_desc_create(&pd, &desc, nullptr, s.engine, nullptr) != dnnl_success) {
    *why = "oneDNN has no matmul for this shape / type";
    return nullptr;
  }
  const char* impl = nullptr;
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
  mm->impl_ = impl != nullptr ? impl : "?";
  const bool ok = dnnl_primitive_create(&s.prim, pd) == dnnl_success;
  dnnl_primitive_desc_destroy(pd);
  if (!ok || dnnl_memory_create(&s.a, &a_md, s.engine, DNNL_MEMORY_NONE) != dnnl_success ||
      dnnl_memory_create(&s.b, &b_md, s.engine, DNNL_MEMORY_NONE) != dnnl_success ||
      dnnl_memory_create(&s.c, &c_md, s.engine, DNNL_MEMORY_NONE) != dnnl_success) {
    *why = "oneDNN could not create the matmul primitive";
    return nullptr;
  }
  return mm;
}

OneDnnMatmul::~OneDnnMatmul() = default;

void OneDnnMatmul::Run(const void* a, const void* b, float* c) {
  State& s = *state_;
  dnnl_memory_set_data_handle(s.a, const_cast<void*>(a));
  dnnl_memory_set_data_handle(s.b, const_cast<void*>(b));
  dnnl_memory_set_data_handle(s.c, c);
  const dnnl_exec_arg_t args[] = {
      {DNNL_ARG_SRC, s.a}, {DNNL_ARG_WEIGHTS, s.b}, {DNNL_ARG_DST, s.c}};
  dnnl_primitive_execute(s.prim, s.stream, 3, args);
  dnnl_stream_wait(s.stream);
}

}  // namespace hc::kernels::bench
