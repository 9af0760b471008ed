// Reference GEMM: the generic dispatch target and the oracle the blocked kernels are tested against.
#include "gemm/gemm.hpp"
#include "gemm/gemm_epilogue.hpp"

namespace pydl::generic {
namespace {

// c: (m, n) row stride ldc; op(a): (m, k); op(b): (k, n), both read through their strides.
// Loop order i-p-j: the innermost loop runs along a row of C and a row of op(B), so it vectorises
// whenever op(B) has unit column stride, and each C element sums its products in order p = 0..k-1.
template <typename T>
void gemm_ref(const GemmArgs<T>& g) {
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0) {
    gemm_empty_k(g);
    return;
  }
  for (int64_t i = 0; i < g.m; ++i) {
    T* c = g.c + i * g.ldc;
    // Zero-fill rather than scale by 0, so NaN in an overwritten `out` never leaks through.
    if (!g.accumulate)
      for (int64_t j = 0; j < g.n; ++j) c[j] = T(0);
    for (int64_t p = 0; p < g.k; ++p) {
      const T aip = g.a[i * g.rs_a + p * g.cs_a];
      const T* b = g.b + p * g.rs_b;
      if (g.cs_b == 1) {
        for (int64_t j = 0; j < g.n; ++j) c[j] += aip * b[j];
      } else {
        for (int64_t j = 0; j < g.n; ++j) c[j] += aip * b[j * g.cs_b];
      }
    }
    if (has_epilogue(g)) apply_epilogue(g, c, g.ldc, 1, 0, g.n);
  }
}

}  // namespace

void fill_gemm(GemmTable& t) {
  t.sgemm = &gemm_ref<float>;
  t.dgemm = &gemm_ref<double>;
}

}  // namespace pydl::generic
