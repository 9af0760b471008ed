// The penalty kernels, written once as plain loops and compiled per ISA (generic, AVX2, AVX-512;
// everything lives in pydl::PYDL_ISA_NS, see common/isa.hpp). The loops are memory-bound and the
// compiler vectorises them with each TU's flags, so hand-written intrinsics would not pay off.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/isa.hpp"
#include "penalties/penalties.hpp"

namespace pydl {
namespace PYDL_ISA_NS {

// Independent partial sums per quantity: they break the chain of dependent additions and map onto
// one AVX-512 (or two AVX2) double vectors, while keeping an order that depends on n alone.
constexpr int kPenaltyLanes = 8;

// sums: (2,), w: (n,)
template <typename T>
void penalty_sums(double* sums, const T* w, int64_t n) {
  double abs_sum[kPenaltyLanes] = {};
  double sq_sum[kPenaltyLanes] = {};
  int64_t i = 0;
  for (; i + kPenaltyLanes <= n; i += kPenaltyLanes) {
    for (int j = 0; j < kPenaltyLanes; ++j) {
      const double v = w[i + j];
      abs_sum[j] += std::fabs(v);
      sq_sum[j] += v * v;
    }
  }
  for (int j = 0; i < n; ++i, ++j) {
    const double v = w[i];
    abs_sum[j] += std::fabs(v);
    sq_sum[j] += v * v;
  }
  double a = 0.0, q = 0.0;
  for (int j = 0; j < kPenaltyLanes; ++j) {
    a += abs_sum[j];
    q += sq_sum[j];
  }
  sums[0] = a;
  sums[1] = q;
}

// grad: (n,), w: (n,)
template <typename T>
void penalty_backward(T* grad, const T* w, T l1, T l2x2, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T sign_l1 = w[i] > T(0) ? l1 : (w[i] < T(0) ? -l1 : T(0));
    grad[i] += sign_l1 + l2x2 * w[i];
  }
}

}  // namespace PYDL_ISA_NS
}  // namespace pydl
