// Element-wise activations and row-wise softmax, forward and backward.
//
// Shapes: forward/backward take n contiguous elements; softmax takes rows x cols contiguous, the
// reduction running along each row (the last axis).
// Dtypes: float32 and float64.
// Backward is written in terms of the forward OUTPUT y (never x), so autograd keeps one array:
//   relu:       dx = dy * (y > 0)                    (relu'(0) = 0)
//   leaky_relu: dx = dy * (y > 0 ? 1 : slope)        (needs slope >= 0, checked by the bindings)
//   elu:        dx = dy * (y > 0 ? 1 : y + alpha)    (needs alpha >= 0)
//   sigmoid:    dx = dy * y * (1 - y)
//   tanh:       dx = dy * (1 - y * y)
//   softmax:     dx = y * (dy - sum(dy * y))          per row
//   log_softmax: dx = dy - exp(y) * sum(dy)           per row
// In-place use (y == x, dx == dy) is allowed. Inner kernels are single-threaded; the bindings split
// the work across threads.
#pragma once

#include <cstdint>

#include "common/act.hpp"
#include "common/fill.hpp"

namespace pydl {

template <typename T>
struct ActFns {
  // y[i] = f(x[i]); `param` is negative_slope (leaky_relu) or alpha (elu), ignored otherwise.
  void (*forward)(Act act, T param, const T* x, T* y, int64_t n) = nullptr;
  // dx[i] = dy[i] * f'(x[i]) computed from y[i] = f(x[i]).
  void (*backward)(Act act, T param, const T* dy, const T* y, T* dx, int64_t n) = nullptr;
  // Row-wise softmax (log_ = false) or log_softmax (log_ = true), numerically stable.
  void (*softmax_forward)(bool log_, const T* x, T* y, int64_t rows, int64_t cols) = nullptr;
  void (*softmax_backward)(bool log_, const T* dy, const T* y, T* dx, int64_t rows,
                           int64_t cols) = nullptr;
};

struct ActTable {
  ActFns<float> f32;
  ActFns<double> f64;
};

PYDL_DECLARE_FILL(fill_activations, ActTable)

}  // namespace pydl
