// AVX2 + FMA GEMM: the blocked driver (gemm_driver.hpp) with 256-bit micro-kernels.
#include <immintrin.h>

#include "gemm/gemm.hpp"
#include "gemm/gemm_driver.hpp"

namespace pydl::avx2 {
namespace {

struct VecF32 {
  using R = __m256;
  static constexpr int kLanes = 8;
  static R zero() { return _mm256_setzero_ps(); }
  static R load(const float* p) { return _mm256_load_ps(p); }
  static R loadu(const float* p) { return _mm256_loadu_ps(p); }
  static R bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static void storeu(float* p, R v) { _mm256_storeu_ps(p, v); }
};

struct VecF64 {
  using R = __m256d;
  static constexpr int kLanes = 4;
  static R zero() { return _mm256_setzero_pd(); }
  static R load(const double* p) { return _mm256_load_pd(p); }
  static R loadu(const double* p) { return _mm256_loadu_pd(p); }
  static R bcast(const double* p) { return _mm256_broadcast_sd(p); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
  static R add(R a, R b) { return _mm256_add_pd(a, b); }
  static void storeu(double* p, R v) { _mm256_storeu_pd(p, v); }
};

// Cache blocks for AMD Zen 5 (L1d 48 KiB, L2 1 MiB per core, L3 32 MiB shared):
// - MR x NR: 6 rows x 2 vectors = 12 ymm accumulators, plus 2 for B and 1 broadcast (of 16).
// - KC: the KC x NR micro-panel of B stays in L1 while the ir loop streams A past it:
//   384 x 16 floats (or x 8 doubles) = 24 KiB.
// - MC: the MC x KC block of A stays in L2 across the jr loop: ~380 KiB, about a third of L2.
// - NC: the KC x NC block of B lives in L3 (6 MiB of f32).
struct SgemmAvx2 {
  using T = float;
  using V = VecF32;
  static constexpr int MR = 6, NR = 16;
  static constexpr int64_t KC = 384, MC = 6 * 42, NC = 4096;
};

struct DgemmAvx2 {
  using T = double;
  using V = VecF64;
  static constexpr int MR = 6, NR = 8;
  static constexpr int64_t KC = 384, MC = 6 * 21, NC = 2048;
};

}  // namespace

void fill_gemm(GemmTable& t) {
  t.sgemm = &gemm_detail::gemm<SgemmAvx2>;
  t.dgemm = &gemm_detail::gemm<DgemmAvx2>;
}

}  // namespace pydl::avx2
