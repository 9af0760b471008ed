// The penalty sums written once over common/simd.hpp; penalties_avx2.cpp and
// penalties_avx512.cpp include this header, so each compiles it for its own vector width.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/isa.hpp"
#include "common/simd.hpp"
#include "penalties/penalties.hpp"
#include "penalties/penalties_impl.hpp"

namespace pydl {
namespace PYDL_ISA_NS {
namespace penalty_simd {

using simd::Vec;

constexpr int kAcc = 4;  // independent accumulators per sum, to hide the add latency

// sums: (2,), w: (n,). Elements are widened to double; the order of the additions depends on n
// alone. The ragged end keeps each ISA's historical order (so the sums keep their bits): AVX-512
// folds it into the first accumulators with one masked load, AVX2 adds it in scalar code after
// the vector reduction.
template <typename T>
void penalty_sums(double* sums, const T* w, int64_t n) {
  using V = Vec<double>;
  constexpr int64_t W = V::W;
  V abs_sum[kAcc], sq_sum[kAcc];
  for (int j = 0; j < kAcc; ++j) abs_sum[j] = sq_sum[j] = simd::zero<V>();
  int64_t i = 0;
  for (; i + kAcc * W <= n; i += kAcc * W) {
    for (int j = 0; j < kAcc; ++j) {
      const V v = simd::load_f64(w + i + j * W);
      abs_sum[j] = abs_sum[j] + simd::abs(v);
      sq_sum[j] = simd::fmadd(v, v, sq_sum[j]);
    }
  }
  for (; i + W <= n; i += W) {
    const V v = simd::load_f64(w + i);
    abs_sum[0] = abs_sum[0] + simd::abs(v);
    sq_sum[0] = simd::fmadd(v, v, sq_sum[0]);
  }
  if constexpr (W == 8) {
    if (i < n) {
      const V v = simd::load_f64_partial(w + i, n - i);
      abs_sum[0] = abs_sum[0] + simd::abs(v);
      sq_sum[0] = simd::fmadd(v, v, sq_sum[0]);
      i = n;
    }
  }
  for (int j = 1; j < kAcc; ++j) {
    abs_sum[0] = abs_sum[0] + abs_sum[j];
    sq_sum[0] = sq_sum[0] + sq_sum[j];
  }
  double a = simd::reduce_add(abs_sum[0]), q = simd::reduce_add(sq_sum[0]);
  for (; i < n; ++i) {
    const double v = w[i];
    a += std::fabs(v);
    q += v * v;
  }
  sums[0] = a;
  sums[1] = q;
}

inline void fill_table(PenaltyTable& t) {
  t.f32.sums = penalty_sums<float>;
  t.f64.sums = penalty_sums<double>;
  t.f32.backward = penalty_backward<float>;
  t.f64.backward = penalty_backward<double>;
}

}  // namespace penalty_simd
}  // namespace PYDL_ISA_NS
}  // namespace pydl
