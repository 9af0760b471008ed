// AVX2 penalty kernels: the sums widen 4 elements at a time to double; the ragged end (< 4
// elements) is added in scalar code.
#include <immintrin.h>

#include <cmath>

#include "penalties/penalties.hpp"
#include "penalties/penalties_impl.hpp"

namespace pydl::avx2 {
namespace {

constexpr int kLanes = 4;  // doubles per vector
constexpr int kAcc = 4;    // independent accumulators per sum, to hide the add latency

inline __m256d load_pd(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
inline __m256d load_pd(const double* p) { return _mm256_loadu_pd(p); }

inline __m256d abs_pd(__m256d v) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), v); }

// Sum of the 4 lanes, in a fixed order.
inline double hsum(__m256d v) {
  const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

// sums: (2,), w: (n,)
template <typename T>
void penalty_sums(double* sums, const T* w, int64_t n) {
  __m256d abs_sum[kAcc], sq_sum[kAcc];
  for (int j = 0; j < kAcc; ++j) abs_sum[j] = sq_sum[j] = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + kAcc * kLanes <= n; i += kAcc * kLanes) {
    for (int j = 0; j < kAcc; ++j) {
      const __m256d v = load_pd(w + i + j * kLanes);
      abs_sum[j] = _mm256_add_pd(abs_sum[j], abs_pd(v));
      sq_sum[j] = _mm256_fmadd_pd(v, v, sq_sum[j]);
    }
  }
  for (; i + kLanes <= n; i += kLanes) {
    const __m256d v = load_pd(w + i);
    abs_sum[0] = _mm256_add_pd(abs_sum[0], abs_pd(v));
    sq_sum[0] = _mm256_fmadd_pd(v, v, sq_sum[0]);
  }
  for (int j = 1; j < kAcc; ++j) {
    abs_sum[0] = _mm256_add_pd(abs_sum[0], abs_sum[j]);
    sq_sum[0] = _mm256_add_pd(sq_sum[0], sq_sum[j]);
  }
  double a = hsum(abs_sum[0]), q = hsum(sq_sum[0]);
  for (; i < n; ++i) {
    const double v = w[i];
    a += std::fabs(v);
    q += v * v;
  }
  sums[0] = a;
  sums[1] = q;
}

}  // namespace

void fill_penalties(PenaltyTable& t) {
  t.f32.sums = penalty_sums<float>;
  t.f64.sums = penalty_sums<double>;
  t.f32.backward = penalty_backward<float>;
  t.f64.backward = penalty_backward<double>;
}

}  // namespace pydl::avx2
