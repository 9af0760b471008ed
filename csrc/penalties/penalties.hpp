// Weight penalties (regularizers): value and gradient of
//   l1 * sum|w| + l2 * sum w^2
// which covers L1 (l1 = wd, l2 = 0), L2 (l1 = 0, l2 = wd) and the elastic net
// (l1 = wd * l1_ratio, l2 = wd * (1 - l1_ratio)) with one kernel pair.
//
// Shapes: both entries take n contiguous elements of w (any shape flattened).
// Dtypes: float32 and float64 (one entry each); sums are accumulated in double.
// sums: sums[0] = sum|w|, sums[1] = sum w^2, added in an order that depends on n alone (not on
//   alignment, thread or ISA of the caller's split), so the entry points get the same bits for any
//   thread count by summing fixed-size blocks and combining the block sums in block order.
// backward: grad += l1 * sign(w) + l2x2 * w with sign(0) = 0 (so the L1 gradient at 0 is 0) and
//   l2x2 = 2 * l2; accumulates into grad, never overwrites it. Both terms are always evaluated:
//   a NaN w gives a NaN gradient, and w = +-inf gives inf, or NaN when l2x2 = 0 (0 * inf).
// grad must not overlap w. Inner kernels are single-threaded.
#pragma once

#include <cstdint>

#include "common/fill.hpp"

namespace pydl {

template <typename T>
struct PenaltyFns {
  // sums: (2,), w: (n,)
  void (*sums)(double* sums, const T* w, int64_t n) = nullptr;
  // grad: (n,), w: (n,)
  void (*backward)(T* grad, const T* w, T l1, T l2x2, int64_t n) = nullptr;
};

struct PenaltyTable {
  PenaltyFns<float> f32;
  PenaltyFns<double> f64;
};

PYDL_DECLARE_FILL(fill_penalties, PenaltyTable)

// Whole-array entry points (penalties.cpp) for weight wd and L1 share l1_ratio (L1: 1, L2: 0):
namespace penalties {
// wd * (l1_ratio * sum|w| + (1 - l1_ratio) * sum w^2), w: (n,); bit-identical for any thread count
template <typename T>
double value(const T* w, int64_t n, double wd, double l1_ratio);
// grad += its gradient; grad, w: (n,)
template <typename T>
void backward(T* grad, const T* w, int64_t n, double wd, double l1_ratio);
}  // namespace penalties

}  // namespace pydl
