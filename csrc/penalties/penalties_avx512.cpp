// AVX-512 penalty kernels: the sums widen 8 elements at a time to double; the ragged end is read
// with masked loads (masked-off lanes are 0 and add nothing to either sum).
#include <immintrin.h>

#include "penalties/penalties.hpp"
#include "penalties/penalties_impl.hpp"

namespace pydl::avx512 {
namespace {

constexpr int kLanes = 8;  // doubles per vector
constexpr int kAcc = 4;    // independent accumulators per sum, to hide the add latency

// Up to 8 elements of w as doubles, lanes outside `k` set to 0.
inline __m512d load_pd(const float* p, __mmask8 k) {
  return _mm512_cvtps_pd(_mm256_maskz_loadu_ps(k, p));
}
inline __m512d load_pd(const double* p, __mmask8 k) { return _mm512_maskz_loadu_pd(k, p); }

// sums: (2,), w: (n,)
template <typename T>
void penalty_sums(double* sums, const T* w, int64_t n) {
  __m512d abs_sum[kAcc], sq_sum[kAcc];
  for (int j = 0; j < kAcc; ++j) abs_sum[j] = sq_sum[j] = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + kAcc * kLanes <= n; i += kAcc * kLanes) {
    for (int j = 0; j < kAcc; ++j) {
      const __m512d v = load_pd(w + i + j * kLanes, 0xFF);
      abs_sum[j] = _mm512_add_pd(abs_sum[j], _mm512_abs_pd(v));
      sq_sum[j] = _mm512_fmadd_pd(v, v, sq_sum[j]);
    }
  }
  for (; i < n; i += kLanes) {
    const int64_t left = n - i;
    const __m512d v = load_pd(w + i, left >= kLanes ? 0xFF : static_cast<__mmask8>((1u << left) - 1));
    abs_sum[0] = _mm512_add_pd(abs_sum[0], _mm512_abs_pd(v));
    sq_sum[0] = _mm512_fmadd_pd(v, v, sq_sum[0]);
  }
  for (int j = 1; j < kAcc; ++j) {
    abs_sum[0] = _mm512_add_pd(abs_sum[0], abs_sum[j]);
    sq_sum[0] = _mm512_add_pd(sq_sum[0], sq_sum[j]);
  }
  sums[0] = _mm512_reduce_add_pd(abs_sum[0]);
  sums[1] = _mm512_reduce_add_pd(sq_sum[0]);
}

}  // namespace

void fill_penalties(PenaltyTable& t) {
  t.f32.sums = penalty_sums<float>;
  t.f64.sums = penalty_sums<double>;
  t.f32.backward = penalty_backward<float>;
  t.f64.backward = penalty_backward<double>;
}

}  // namespace pydl::avx512
