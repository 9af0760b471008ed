// Element-wise activations and row-wise softmax, forward and backward.
//
// Shapes: forward/backward take n contiguous elements; softmax takes rows x cols contiguous, the
// reduction running along each row (the last axis).
// Dtypes: float32 and float64.
// Backward of relu .. tanh is written in terms of the forward OUTPUT y (autograd keeps one array):
//   relu:       dx = dy * (y > 0)                    (relu'(0) = 0)
//   leaky_relu: dx = dy * (y > 0 ? 1 : slope)        (needs slope >= 0, checked by the bindings)
//   elu:        dx = dy * (y > 0 ? 1 : y + alpha)    (needs alpha >= 0)
//   sigmoid:    dx = dy * y * (1 - y)
//   tanh:       dx = dy * (1 - y * y)
// GELU and SiLU cannot be inverted from y (act_backward_reads_input in common/act.hpp), so their
// backward takes the forward INPUT x instead (for a fused linear layer, the pre-activation):
//   gelu:       y = x Phi(x),       dx = dy * (Phi(x) + x phi(x))    (Phi/phi: normal CDF/PDF)
//   gelu_tanh:  y = x s(t), t = 2 sqrt(2/pi) (x + 0.044715 x^3),  dx = dy * (s + x s (1 - s) t')
//               (0.5 (1 + tanh(t / 2)) = s(t), the logistic sigmoid, without tanh's cancellation)
//   silu:       y = x s(x),         dx = dy * (s + x s (1 - s))
// At +-inf they take their limits: y(-inf) = -0, y(+inf) = +inf, dx/dy = 0 at -inf and 1 at +inf
// (PyTorch gives NaN for the -inf output and for both derivatives).
//   softmax:     dx = y * (dy - sum(dy * y))          per row
//   log_softmax: dx = dy - exp(y) * sum(dy)           per row
// In-place use (y == x, dx == dy) is allowed. The table's kernels are single-threaded; the
// whole-array entry points at the end (activations.cpp) dispatch to the active ISA and split the
// work across the pool (results never depend on the thread count).
#pragma once

#include <cstdint>

#include "common/act.hpp"
#include "common/fill.hpp"

namespace pydl {

template <typename T>
struct ActFns {
  // y[i] = f(x[i]); `param` is negative_slope (leaky_relu) or alpha (elu), ignored otherwise.
  void (*forward)(Act act, T param, const T* x, T* y, int64_t n) = nullptr;
  // dx[i] = dy[i] * f'(x[i]), computed from s[i] = y[i] = f(x[i]), or s[i] = x[i] when
  // act_backward_reads_input(act).
  void (*backward)(Act act, T param, const T* dy, const T* s, T* dx, int64_t n) = nullptr;
  // y[i] = erf(x[i]), or erfc(x[i]) when complement (the special function under GELU; bound as
  // pydl._core._erf for its accuracy tests).
  void (*erf)(bool complement, const T* x, T* y, int64_t n) = nullptr;
  // The GEMM epilogue on a finished tile of C (rows x cols, row stride ld): c = f(c + bias[j])
  // for each element, c + bias[j] also stored in pre (laid out like c) when pre is given. bias
  // (indexed from the tile's first column) and pre may be nullptr; act may be kNone. One call
  // per tile with the bias add and the activation in one pass (the same bits as an add, then
  // forward).
  void (*epilogue)(Act act, T param, const T* bias, T* c, T* pre, int64_t ld, int64_t rows,
                   int64_t cols) = nullptr;
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

namespace activations {
// x, y: (n,)
template <typename T>
void forward(Act act, T param, const T* x, T* y, int64_t n);
// dy, s, dx: (n,); s is y, or x when act_backward_reads_input(act)
template <typename T>
void backward(Act act, T param, const T* dy, const T* s, T* dx, int64_t n);
// x, y: (n,); erf, or erfc when complement
template <typename T>
void erf(bool complement, const T* x, T* y, int64_t n);
// x, y: (rows, cols)
template <typename T>
void softmax_forward(bool log_, const T* x, T* y, int64_t rows, int64_t cols);
// dy, y, dx: (rows, cols)
template <typename T>
void softmax_backward(bool log_, const T* dy, const T* y, T* dx, int64_t rows, int64_t cols);
}  // namespace activations

}  // namespace pydl
