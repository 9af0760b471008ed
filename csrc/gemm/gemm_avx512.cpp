// AVX-512 GEMM: the blocked driver (gemm_driver.hpp) with 512-bit micro-kernels.
#include <immintrin.h>

#include "gemm/gemm.hpp"
#include "gemm/gemm_driver.hpp"

namespace pydl::avx512 {
namespace {

struct VecF32 {
  using R = __m512;
  static constexpr int kLanes = 16;
  static R zero() { return _mm512_setzero_ps(); }
  static R load(const float* p) { return _mm512_load_ps(p); }
  static R loadu(const float* p) { return _mm512_loadu_ps(p); }
  static R bcast(const float* p) { return _mm512_set1_ps(*p); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static void storeu(float* p, R v) { _mm512_storeu_ps(p, v); }
};

struct VecF64 {
  using R = __m512d;
  static constexpr int kLanes = 8;
  static R zero() { return _mm512_setzero_pd(); }
  static R load(const double* p) { return _mm512_load_pd(p); }
  static R loadu(const double* p) { return _mm512_loadu_pd(p); }
  static R bcast(const double* p) { return _mm512_set1_pd(*p); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
  static R add(R a, R b) { return _mm512_add_pd(a, b); }
  static void storeu(double* p, R v) { _mm512_storeu_pd(p, v); }
};

// Cache blocks for AMD Zen 5 (L1d 48 KiB, L2 1 MiB per core, L3 32 MiB shared):
// - MR x NR: 14 rows x 2 vectors = 28 zmm accumulators, plus 2 for B and 1 broadcast (of 32).
// - KC: the KC x NR micro-panel of B stays in L1 while the ir loop streams A past it:
//   256 x 32 floats (or x 16 doubles) = 32 KiB, leaving room for the A micro-panel.
// - MC: the MC x KC block of A stays in L2 across the jr loop: ~336 KiB, a third of L2, so the
//   B micro-panels and C tiles passing through do not evict it.
// - NC: the KC x NC block of B lives in L3 (4 MiB of f32); larger only re-packs less often.
struct SgemmAvx512 {
  using T = float;
  using V = VecF32;
  static constexpr int MR = 14, NR = 32;
  static constexpr int64_t KC = 256, MC = 14 * 24, NC = 4096;
};

struct DgemmAvx512 {
  using T = double;
  using V = VecF64;
  static constexpr int MR = 14, NR = 16;
  static constexpr int64_t KC = 256, MC = 14 * 12, NC = 2048;
};

}  // namespace

void fill_gemm(GemmTable& t) {
  t.sgemm = &gemm_detail::gemm<SgemmAvx512>;
  t.dgemm = &gemm_detail::gemm<DgemmAvx512>;
}

}  // namespace pydl::avx512
