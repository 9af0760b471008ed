// Reference activations: plain scalar C++ on top of libm. This is the generic dispatch target and
// the oracle the SIMD variants are tested against, so it favours obviously-correct formulas.
//
// Special values (shared by every ISA):
//  - NaN in x (forward) or in dy / y (backward) gives NaN out.
//  - relu'(0) = 0 and leaky_relu'(0) = slope: the derivative at 0 takes the non-positive branch;
//    elu at x = 0 takes the alpha branch (alpha * expm1(0) = 0, derivative 0 + alpha), like PyTorch.
//  - sigmoid(+-inf) = 1 / 0 and tanh(+-inf) = +-1, with derivative exactly 0 (finite).
//  - softmax rows containing +inf or NaN give an all-NaN row (x - max is NaN there), as the
//    textbook numpy expression does; -inf entries give 0 (log_softmax: -inf) if the row also has a
//    finite entry.
#include <cmath>
#include <cstring>

#include "activations/activations.hpp"

namespace pydl::generic {
namespace {

// Beyond these |x| the activations below have reached their limits (x Phi(x) and x s(t(x))
// underflow to -0 below -40; x s(x) below -1000); clamping there keeps +-inf from making 0 * inf.
constexpr double kGeluClamp = 40.0;
constexpr double kSiluClamp = 1000.0;

// s(t) = 1 / (1 + exp(-t)) and s(t) (1 - s(t)), both from e = exp(-|t|) without cancellation.
template <typename T>
void sigmoid_parts(T t, T& s, T& s1ms) {
  T e = std::exp(-std::fabs(t));
  T inv = T(1) / (T(1) + e);
  s = t >= T(0) ? inv : e * inv;
  s1ms = e * inv * inv;
}

// t(x) of gelu_tanh and dt/dx.
template <typename T>
T gelu_tanh_t(T x, T& dt) {
  const T k0 = T(2 * 0.7978845608028654);  // 2 sqrt(2 / pi)
  const T k1 = T(0.044715);
  dt = k0 * (T(1) + T(3) * k1 * x * x);
  return k0 * x * (T(1) + k1 * x * x);
}

// Value (derivative = false) or derivative of the input-saving activations at x.
template <typename T>
T input_act1(Act act, T x, bool derivative) {
  const T lim = T(act == Act::kSilu ? kSiluClamp : kGeluClamp);
  // NaN stays NaN through the comparisons below.
  T cx = x < -lim ? -lim : (x > lim ? lim : x);
  T scale = x > T(0) ? x : cx;
  if (act == Act::kGelu) {
    // Evaluated in double for both dtypes (as the SIMD kernels do).
    double c = double(cx);
    double phi_cdf = 0.5 * std::erfc(-c * 0.70710678118654752440);
    if (!derivative) return T(double(scale) * phi_cdf);
    return T(phi_cdf + c * std::exp(-0.5 * c * c) * 0.39894228040143267794);
  }
  T s, s1ms, dt = T(1);
  T t = act == Act::kGeluTanh ? gelu_tanh_t(cx, dt) : cx;
  sigmoid_parts(t, s, s1ms);
  if (!derivative) return scale * s;
  return s + cx * s1ms * dt;
}


template <typename T>
T act_forward1(Act act, T param, T x) {
  switch (act) {
    case Act::kRelu: return x < T(0) ? T(0) : x;
    case Act::kLeakyRelu: return x > T(0) ? x : param * x;
    case Act::kElu: return x > T(0) ? x : param * std::expm1(x);
    case Act::kSigmoid: {
      // exp of a non-positive argument never overflows; e / (1 + e) keeps relative accuracy
      // for very negative x where 1 - 1 / (1 + e) would cancel.
      T e = std::exp(-std::fabs(x));
      T s = T(1) / (T(1) + e);
      return x >= T(0) ? s : e * s;
    }
    case Act::kTanh: return std::tanh(x);
    case Act::kGelu:
    case Act::kGeluTanh:
    case Act::kSilu: return input_act1(act, x, false);
    case Act::kNone: break;
  }
  return x;
}

// f'(x) expressed through s = y = f(x), or s = x for the input-saving activations. The piece-wise
// ones check y != y so a NaN output gives NaN (numpy's dy * (y > 0) would silently give 0 there).
template <typename T>
T act_derivative1(Act act, T param, T y) {
  switch (act) {
    case Act::kRelu: return y > T(0) ? T(1) : (y != y ? y : T(0));
    case Act::kLeakyRelu: return y > T(0) ? T(1) : (y != y ? y : param);
    case Act::kElu: return y > T(0) ? T(1) : y + param;
    case Act::kSigmoid: return y * (T(1) - y);
    // Factored, 1 - y is exact near |y| = 1, where 1 - y * y would cancel.
    case Act::kTanh: return (T(1) - y) * (T(1) + y);
    case Act::kGelu:
    case Act::kGeluTanh:
    case Act::kSilu: return input_act1(act, y, true);
    case Act::kNone: break;
  }
  return T(1);
}

// x: (n,), y: (n,)
template <typename T>
void forward(Act act, T param, const T* x, T* y, int64_t n) {
  if (act == Act::kNone) {
    if (x != y && n > 0) std::memmove(y, x, static_cast<size_t>(n) * sizeof(T));
    return;
  }
  for (int64_t i = 0; i < n; ++i) y[i] = act_forward1(act, param, x[i]);
}

// dy: (n,), y: (n,), dx: (n,)
template <typename T>
void backward(Act act, T param, const T* dy, const T* y, T* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * act_derivative1(act, param, y[i]);
}

// x: (n,), y: (n,)
template <typename T>
void erf(bool complement, const T* x, T* y, int64_t n) {
  // In double for both dtypes, as the SIMD kernels do (float results are rounded once).
  for (int64_t i = 0; i < n; ++i) {
    double v = double(x[i]);
    y[i] = T(complement ? std::erfc(v) : std::erf(v));
  }
}

// x: (rows, cols), y: (rows, cols)
template <typename T>
void softmax_forward(bool log_, const T* x, T* y, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    // A NaN is not picked up by the max, but then x - m is NaN for it and the sum turns NaN.
    T m = -INFINITY;
    for (int64_t j = 0; j < cols; ++j) m = xr[j] > m ? xr[j] : m;
    T s = T(0);
    if (log_) {
      for (int64_t j = 0; j < cols; ++j) s += std::exp(xr[j] - m);
      T lse = std::log(s);
      for (int64_t j = 0; j < cols; ++j) yr[j] = (xr[j] - m) - lse;
    } else {
      for (int64_t j = 0; j < cols; ++j) {
        yr[j] = std::exp(xr[j] - m);
        s += yr[j];
      }
      T inv = T(1) / s;
      for (int64_t j = 0; j < cols; ++j) yr[j] *= inv;
    }
  }
}

// dy: (rows, cols), y: (rows, cols), dx: (rows, cols)
template <typename T>
void softmax_backward(bool log_, const T* dy, const T* y, T* dx, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* dyr = dy + r * cols;
    const T* yr = y + r * cols;
    T* dxr = dx + r * cols;
    T s = T(0);
    if (log_) {
      for (int64_t j = 0; j < cols; ++j) s += dyr[j];
      for (int64_t j = 0; j < cols; ++j) dxr[j] = dyr[j] - std::exp(yr[j]) * s;
    } else {
      for (int64_t j = 0; j < cols; ++j) s += dyr[j] * yr[j];
      for (int64_t j = 0; j < cols; ++j) dxr[j] = yr[j] * (dyr[j] - s);
    }
  }
}

// c, pre: (rows, cols) with row stride ld; bias: (cols,); bias and pre may be nullptr.
template <typename T>
void epilogue(Act act, T param, const T* bias, T* c, T* pre, int64_t ld, int64_t rows,
              int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    T* row = c + r * ld;
    if (bias)
      for (int64_t j = 0; j < cols; ++j) row[j] += bias[j];
    if (pre) std::memcpy(pre + r * ld, row, static_cast<size_t>(cols) * sizeof(T));
    if (act != Act::kNone) forward(act, param, row, row, cols);
  }
}

template <typename T>
void fill(ActFns<T>& f) {
  f.forward = &forward<T>;
  f.backward = &backward<T>;
  f.erf = &erf<T>;
  f.epilogue = &epilogue<T>;
  f.softmax_forward = &softmax_forward<T>;
  f.softmax_backward = &softmax_backward<T>;
}

}  // namespace

void fill_activations(ActTable& t) {
  fill(t.f32);
  fill(t.f64);
}

}  // namespace pydl::generic
