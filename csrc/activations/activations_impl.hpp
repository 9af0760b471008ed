// Activation kernels written once over common/simd.hpp. activations_avx2.cpp and
// activations_avx512.cpp include this header, so each compiles it for its own vector width.
//
// Every activation is a small functor with forward(x) and derivative(y) on whole vectors; the
// drivers below stream arrays through them and handle the ragged tail with masked loads/stores.
// Special values follow the reference (activations_ref.cpp): NaN in -> NaN out, relu'(0) = 0,
// GELU/SiLU take their limits at +-inf,
// elu(0) on the alpha branch, sigmoid/tanh saturate at +-inf with a zero derivative, softmax rows
// holding +inf or NaN come out all-NaN.
#pragma once

#include <cmath>
#include <cstring>

#include "activations/activations.hpp"
#include "common/isa.hpp"
#include "common/simd.hpp"

namespace pydl {
namespace PYDL_ISA_NS {
namespace act_simd {

using simd::Vec;

template <typename T>
struct Relu {
  using V = Vec<T>;
  explicit Relu(T) {}
  // max keeps its second operand when either is NaN, so a NaN x passes through.
  V forward(V x) const { return simd::max(simd::zero<V>(), x); }
  V derivative(V y) const {
    V z = simd::zero<V>();
    return simd::select(simd::gt(y, z), simd::set1(T(1)), simd::select(simd::isnan(y), y, z));
  }
};

template <typename T>
struct LeakyRelu {
  using V = Vec<T>;
  V slope;
  explicit LeakyRelu(T s) : slope(simd::set1(s)) {}
  V forward(V x) const { return simd::select(simd::gt(x, simd::zero<V>()), x, x * slope); }
  V derivative(V y) const {
    return simd::select(simd::gt(y, simd::zero<V>()), simd::set1(T(1)),
                        simd::select(simd::isnan(y), y, slope));
  }
};

template <typename T>
struct Elu {
  using V = Vec<T>;
  V alpha;
  explicit Elu(T a) : alpha(simd::set1(a)) {}
  // expm1, not exp - 1: keeps relative accuracy for small negative x. Only x <= 0 needs it, so
  // the argument is capped at 0 (keeping NaN) and the cheaper bounded expm1 suffices.
  V forward(V x) const {
    V z = simd::zero<V>();
    return simd::select(simd::gt(x, z), x, alpha * simd::expm1_bounded(simd::min(z, x)));
  }
  V derivative(V y) const {
    return simd::select(simd::gt(y, simd::zero<V>()), simd::set1(T(1)), y + alpha);
  }
};

template <typename T>
struct Sigmoid {
  using V = Vec<T>;
  explicit Sigmoid(T) {}
  // e = exp(-|x|) never overflows; for x < 0, e / (1 + e) avoids the cancellation in
  // 1 - 1 / (1 + e) and stays accurate relative to tiny results.
  V forward(V x) const {
    V e = simd::exp(simd::zero<V>() - simd::abs(x));
    V s = simd::set1(T(1)) / (simd::set1(T(1)) + e);
    return simd::select(simd::ge(x, simd::zero<V>()), s, e * s);
  }
  V derivative(V y) const { return y * (simd::set1(T(1)) - y); }
};

// |x| beyond which tanh(x) rounds to +-1 (1 - tanh|x| ~ 2 exp(-2|x|) < half an ulp of 1); twice
// it stays below ExpConst::kMaxBounded.
template <typename T>
constexpr T kTanhSaturate = sizeof(T) == 4 ? T(9.1) : T(19.5);

// float tanh|x| = |x| * P(s) / Q(s), s = x^2, on the clamped range |x| <= kTanhSaturate<float>:
// a relative-error minimax rational fit (degrees 5 / 4 in s, fitted in float64 by Lawson-weighted
// least squares; P(0) = Q(0) = 1 so tiny x give x exactly). The fit is off by < 2e-9 relative;
// rounding in the float evaluation dominates. Measured against float64 np.tanh over EVERY float32
// with |x| < 9.5 (AVX2 and AVX-512): max 4.9 ulp (near |x| = 6.3), <= 3.1 ulp for |x| < 0.5,
// never above 1, exactly +-1 from the clamp on. The expm1 form it replaces (an estimated 2-3
// ulp) is ~1.3x slower: this loop is bound by the FMA pipes (11 multiply/FMA ops + 1 division
// per vector here vs ~15 + 1), and a reciprocal estimate + Newton step was slower than the
// division itself.
constexpr float kTanhP[] = {1.0f, 1.367778778e-01f, 3.865633626e-03f, 2.795136788e-05f,
                            3.044338825e-08f, -1.209253791e-11f};
constexpr float kTanhQ[] = {1.0f, 4.701111913e-01f, 2.723605372e-02f, 3.933818953e-04f,
                            1.283356710e-06f};

// c[0] + c[1] s + ... + c[N-1] s^(N-1)
template <typename V, int N>
V horner(V s, const float (&c)[N]) {
  V r = simd::set1(c[N - 1]);
  for (int i = N - 2; i >= 0; --i) r = simd::fmadd(r, s, simd::set1(c[i]));
  return r;
}

template <typename T>
struct Tanh {
  using V = Vec<T>;
  explicit Tanh(T) {}
  V forward(V x) const {
    // min keeps a NaN |x| (second operand), which then propagates through every step.
    V a = simd::min(simd::set1(kTanhSaturate<T>), simd::abs(x));
    if constexpr (sizeof(T) == 4) {
      V s = a * a;
      // Guards against rounding a hair above 1 near the clamp (none seen; tanh must not exceed 1).
      V t = simd::min(simd::set1(1.0f), a * horner(s, kTanhP) / horner(s, kTanhQ));
      return simd::copysign(t, x);
    } else {
      // tanh|x| = m / (m + 2) with m = expm1(2|x|): relative accuracy near 0 comes from expm1,
      // and clamping |x| keeps m finite so +-inf gives exactly +-1 instead of inf / inf.
      V m = simd::expm1_bounded(a + a);
      return simd::copysign(m / (m + simd::set1(T(2))), x);
    }
  }
  // One rounding of the exact 1 - y * y: no cancellation near |y| = 1.
  V derivative(V y) const { return simd::fnmadd(y, y, simd::set1(T(1))); }
};

// The input-saving activations (GELU, SiLU; their derivative takes x, see activations.hpp).
// Beyond these |x| they have reached their limits; clamping there keeps +-inf from making 0 * inf.
template <typename T>
constexpr T kGeluClamp = T(40);
template <typename T>
constexpr T kSiluClamp = T(1000);

// x * Phi(x) with Phi(x) = erfc(-x / sqrt2) / 2, evaluated in float64 for both dtypes: the erfc
// tail term exp(-x^2 / 2) comes from exp_neg_sq, so the result keeps its relative accuracy far
// into the negative tail (the textbook 0.5 x (1 + erf(x / sqrt2)) cancels to 0 below x = -8).
struct GeluF64 {
  using V = Vec<double>;
  // Phi(cx) and e = exp(-cx^2 / 2) for cx = x clamped to [-40, 40] (NaN kept).
  static V cdf(V cx, V& e) {
    e = simd::exp_neg_sq(cx, 0.5);
    V a = simd::abs(cx) * simd::set1(0.70710678118654752440);  // |x| / sqrt2
    V q = simd::set1(0.5) * simd::erfc_nonneg(a, e);
    return simd::select(simd::lt(cx, simd::zero<V>()), q, simd::set1(1.0) - q);
  }
  static V clamp(V x) {
    return simd::clamp(x, simd::set1(-kGeluClamp<double>), simd::set1(kGeluClamp<double>));
  }
  static V forward(V x) {
    V cx = clamp(x), e;
    return simd::select(simd::gt(x, simd::zero<V>()), x, cx) * cdf(cx, e);
  }
  // Phi(x) + x phi(x), phi(x) = e / sqrt(2 pi).
  static V derivative(V x) {
    V cx = clamp(x), e;
    V p = cdf(cx, e);
    return simd::fmadd(cx, e * simd::set1(0.39894228040143267794), p);
  }
};

// f(x) lane by lane in float64: directly for double, through two widened halves for float.
template <typename T, typename F>
Vec<T> in_f64(Vec<T> x, F f) {
  if constexpr (sizeof(T) == 8) {
    return f(x);
  } else {
    Vec<double> lo, hi;
    simd::widen(x, lo, hi);
    return simd::narrow(f(lo), f(hi));
  }
}

template <typename T>
struct Gelu {
  using V = Vec<T>;
  explicit Gelu(T) {}
  V forward(V x) const { return in_f64<T>(x, GeluF64::forward); }
  V derivative(V x) const { return in_f64<T>(x, GeluF64::derivative); }
};

// x * s(t(x)) for the logistic s: t(x) = x for SiLU, t(x) = 2 sqrt(2/pi) (x + 0.044715 x^3) for
// GELU's tanh form (0.5 (1 + tanh(t / 2)) = s(t), which avoids 1 + tanh's cancellation for x < 0).
template <typename T, bool kTanhForm>
struct SigmoidGated {
  using V = Vec<T>;
  static constexpr T kLim = kTanhForm ? kGeluClamp<T> : kSiluClamp<T>;
  explicit SigmoidGated(T) {}
  // t(cx) and dt/dx at cx.
  static V t_of(V cx, V& dt) {
    if constexpr (kTanhForm) {
      const V k0 = simd::set1(T(2 * 0.7978845608028654));
      const V k1 = simd::set1(T(0.044715));
      V x2 = cx * cx;
      dt = k0 * simd::fmadd(simd::set1(T(3)) * k1, x2, simd::set1(T(1)));
      return k0 * cx * simd::fmadd(k1, x2, simd::set1(T(1)));
    } else {
      dt = simd::set1(T(1));
      return cx;
    }
  }
  // s(t) and s(t) (1 - s(t)) from e = exp(-|t|), as the Sigmoid functor does (no cancellation).
  static V gate(V t, V& s1ms) {
    V e = simd::exp(simd::zero<V>() - simd::abs(t));
    V inv = simd::set1(T(1)) / (simd::set1(T(1)) + e);
    s1ms = e * inv * inv;
    return simd::select(simd::ge(t, simd::zero<V>()), inv, e * inv);
  }
  static V clamp(V x) { return simd::clamp(x, simd::set1(-kLim), simd::set1(kLim)); }
  V forward(V x) const {
    V cx = clamp(x), dt, s1ms;
    return simd::select(simd::gt(x, simd::zero<V>()), x, cx) * gate(t_of(cx, dt), s1ms);
  }
  V derivative(V x) const {
    V cx = clamp(x), dt, s1ms;
    V s = gate(t_of(cx, dt), s1ms);
    return simd::fmadd(cx * s1ms, dt, s);
  }
};

// x: (n,), y: (n,)
template <typename T, typename F>
void map_forward(const F& f, const T* x, T* y, int64_t n) {
  constexpr int64_t W = Vec<T>::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) simd::storeu(y + i, f.forward(simd::loadu(x + i)));
  if (i < n) simd::store_partial(y + i, f.forward(simd::load_partial(x + i, n - i)), n - i);
}

// dy: (n,), y: (n,) (the input x for GELU/SiLU), dx: (n,)
template <typename T, typename F>
void map_backward(const F& f, const T* dy, const T* y, T* dx, int64_t n) {
  constexpr int64_t W = Vec<T>::W;
  int64_t i = 0;
  for (; i + W <= n; i += W)
    simd::storeu(dx + i, simd::loadu(dy + i) * f.derivative(simd::loadu(y + i)));
  if (i < n) {
    int64_t r = n - i;
    simd::store_partial(dx + i,
                        simd::load_partial(dy + i, r) * f.derivative(simd::load_partial(y + i, r)),
                        r);
  }
}

template <typename T>
struct Identity {
  using V = Vec<T>;
  explicit Identity(T) {}
  V forward(V x) const { return x; }
};

// One vector (or the partial vector of the last w < W columns) of an epilogue row.
template <typename T, typename F, bool kPartial>
inline void epilogue_vec(const F& f, const T* bias, T* c, T* pre, int64_t w) {
  using V = Vec<T>;
  V v = kPartial ? simd::load_partial(c, w) : simd::loadu(c);
  if (bias) v = v + (kPartial ? simd::load_partial(bias, w) : simd::loadu(bias));
  if (kPartial) {
    if (pre) simd::store_partial(pre, v, w);
    simd::store_partial(c, f.forward(v), w);
  } else {
    if (pre) simd::storeu(pre, v);
    simd::storeu(c, f.forward(v));
  }
}

// c, pre: rows x cols with row stride ld; bias: (cols,) or nullptr; pre may be nullptr.
template <typename T, typename F>
void map_epilogue(const F& f, const T* bias, T* c, T* pre, int64_t ld, int64_t rows,
                  int64_t cols) {
  constexpr int64_t W = Vec<T>::W;
  const int64_t full = cols / W * W;
  for (int64_t r = 0; r < rows; ++r) {
    T* cr = c + r * ld;
    T* pr = pre ? pre + r * ld : nullptr;
    for (int64_t j = 0; j < full; j += W)
      epilogue_vec<T, F, false>(f, bias ? bias + j : nullptr, cr + j, pr ? pr + j : nullptr, W);
    if (full < cols)
      epilogue_vec<T, F, true>(f, bias ? bias + full : nullptr, cr + full,
                               pr ? pr + full : nullptr, cols - full);
  }
}

template <typename T>
void epilogue(Act act, T param, const T* bias, T* c, T* pre, int64_t ld, int64_t rows,
              int64_t cols) {
  switch (act) {
    case Act::kNone: return map_epilogue(Identity<T>(param), bias, c, pre, ld, rows, cols);
    case Act::kRelu: return map_epilogue(Relu<T>(param), bias, c, pre, ld, rows, cols);
    case Act::kLeakyRelu: return map_epilogue(LeakyRelu<T>(param), bias, c, pre, ld, rows, cols);
    case Act::kElu: return map_epilogue(Elu<T>(param), bias, c, pre, ld, rows, cols);
    case Act::kSigmoid: return map_epilogue(Sigmoid<T>(param), bias, c, pre, ld, rows, cols);
    case Act::kTanh: return map_epilogue(Tanh<T>(param), bias, c, pre, ld, rows, cols);
    case Act::kGelu: return map_epilogue(Gelu<T>(param), bias, c, pre, ld, rows, cols);
    case Act::kGeluTanh:
      return map_epilogue(SigmoidGated<T, true>(param), bias, c, pre, ld, rows, cols);
    case Act::kSilu:
      return map_epilogue(SigmoidGated<T, false>(param), bias, c, pre, ld, rows, cols);
  }
}

// x: (n,), y: (n,)
template <typename T>
void forward(Act act, T param, const T* x, T* y, int64_t n) {
  switch (act) {
    case Act::kRelu: return map_forward(Relu<T>(param), x, y, n);
    case Act::kLeakyRelu: return map_forward(LeakyRelu<T>(param), x, y, n);
    case Act::kElu: return map_forward(Elu<T>(param), x, y, n);
    case Act::kSigmoid: return map_forward(Sigmoid<T>(param), x, y, n);
    case Act::kTanh: return map_forward(Tanh<T>(param), x, y, n);
    case Act::kGelu: return map_forward(Gelu<T>(param), x, y, n);
    case Act::kGeluTanh: return map_forward(SigmoidGated<T, true>(param), x, y, n);
    case Act::kSilu: return map_forward(SigmoidGated<T, false>(param), x, y, n);
    case Act::kNone: break;
  }
  if (x != y && n > 0) std::memmove(y, x, static_cast<size_t>(n) * sizeof(T));
}

// dy: (n,), y: (n,) (the input x for GELU/SiLU), dx: (n,)
template <typename T>
void backward(Act act, T param, const T* dy, const T* y, T* dx, int64_t n) {
  switch (act) {
    case Act::kRelu: return map_backward(Relu<T>(param), dy, y, dx, n);
    case Act::kLeakyRelu: return map_backward(LeakyRelu<T>(param), dy, y, dx, n);
    case Act::kElu: return map_backward(Elu<T>(param), dy, y, dx, n);
    case Act::kSigmoid: return map_backward(Sigmoid<T>(param), dy, y, dx, n);
    case Act::kTanh: return map_backward(Tanh<T>(param), dy, y, dx, n);
    case Act::kGelu: return map_backward(Gelu<T>(param), dy, y, dx, n);
    case Act::kGeluTanh: return map_backward(SigmoidGated<T, true>(param), dy, y, dx, n);
    case Act::kSilu: return map_backward(SigmoidGated<T, false>(param), dy, y, dx, n);
    case Act::kNone: break;
  }
  if (dy != dx && n > 0) std::memmove(dx, dy, static_cast<size_t>(n) * sizeof(T));
}

template <typename T>
struct Erf {
  using V = Vec<T>;
  bool complement;
  V forward(V x) const { return complement ? simd::erfc(x) : simd::erf(x); }
};

// x: (n,), y: (n,)
template <typename T>
void erf(bool complement, const T* x, T* y, int64_t n) {
  map_forward(Erf<T>{complement}, x, y, n);
}

// Row maximum. A NaN may be skipped here; it still turns the row's sum of exp(x - max) into NaN.
template <typename T>
T row_max(const T* x, int64_t cols) {
  using V = Vec<T>;
  constexpr int64_t W = V::W;
  V m = simd::set1(-T(INFINITY));
  int64_t j = 0;
  for (; j + W <= cols; j += W) m = simd::max(m, simd::loadu(x + j));
  if (j < cols) m = simd::max(m, simd::load_partial(x + j, cols - j, -T(INFINITY)));
  return simd::reduce_max(m);
}

// x: (rows, cols), y: (rows, cols)
template <typename T>
void softmax_forward(bool log_, const T* x, T* y, int64_t rows, int64_t cols) {
  using V = Vec<T>;
  constexpr int64_t W = V::W;
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    V m = simd::set1(row_max(xr, cols));
    V s = simd::zero<V>();
    // The tail is padded with -inf, whose exp(-inf - max) adds 0 to the sum.
    int64_t tail = cols % W, full = cols - tail;
    if (log_) {
      for (int64_t j = 0; j < full; j += W) s = s + simd::exp(simd::loadu(xr + j) - m);
      if (tail) s = s + simd::exp(simd::load_partial(xr + full, tail, -T(INFINITY)) - m);
      // (x - max) - lse rather than x - (max + lse): the first difference is exact near the max.
      V lse = simd::set1(std::log(simd::reduce_add(s)));
      for (int64_t j = 0; j < full; j += W) simd::storeu(yr + j, simd::loadu(xr + j) - m - lse);
      if (tail) simd::store_partial(yr + full, simd::load_partial(xr + full, tail) - m - lse, tail);
    } else {
      for (int64_t j = 0; j < full; j += W) {
        V e = simd::exp(simd::loadu(xr + j) - m);
        simd::storeu(yr + j, e);
        s = s + e;
      }
      if (tail) {
        V e = simd::exp(simd::load_partial(xr + full, tail, -T(INFINITY)) - m);
        simd::store_partial(yr + full, e, tail);
        s = s + e;
      }
      V inv = simd::set1(T(1) / simd::reduce_add(s));
      for (int64_t j = 0; j < full; j += W) simd::storeu(yr + j, simd::loadu(yr + j) * inv);
      if (tail) simd::store_partial(yr + full, simd::load_partial(yr + full, tail) * inv, tail);
    }
  }
}

// dy: (rows, cols), y: (rows, cols), dx: (rows, cols)
template <typename T>
void softmax_backward(bool log_, const T* dy, const T* y, T* dx, int64_t rows, int64_t cols) {
  using V = Vec<T>;
  constexpr int64_t W = V::W;
  int64_t tail = cols % W, full = cols - tail;
  for (int64_t r = 0; r < rows; ++r) {
    const T* dyr = dy + r * cols;
    const T* yr = y + r * cols;
    T* dxr = dx + r * cols;
    V s = simd::zero<V>();
    if (log_) {
      // dx = dy - softmax * sum(dy), softmax = exp(log_softmax).
      for (int64_t j = 0; j < full; j += W) s = s + simd::loadu(dyr + j);
      if (tail) s = s + simd::load_partial(dyr + full, tail);
      V sv = simd::set1(simd::reduce_add(s));
      for (int64_t j = 0; j < full; j += W)
        simd::storeu(dxr + j, simd::fnmadd(simd::exp(simd::loadu(yr + j)), sv, simd::loadu(dyr + j)));
      if (tail)
        simd::store_partial(dxr + full,
                            simd::fnmadd(simd::exp(simd::load_partial(yr + full, tail)), sv,
                                         simd::load_partial(dyr + full, tail)),
                            tail);
    } else {
      // dx = y * (dy - sum(dy * y)).
      for (int64_t j = 0; j < full; j += W)
        s = simd::fmadd(simd::loadu(dyr + j), simd::loadu(yr + j), s);
      if (tail) s = simd::fmadd(simd::load_partial(dyr + full, tail), simd::load_partial(yr + full, tail), s);
      V sv = simd::set1(simd::reduce_add(s));
      for (int64_t j = 0; j < full; j += W)
        simd::storeu(dxr + j, simd::loadu(yr + j) * (simd::loadu(dyr + j) - sv));
      if (tail)
        simd::store_partial(
            dxr + full, simd::load_partial(yr + full, tail) * (simd::load_partial(dyr + full, tail) - sv),
            tail);
    }
  }
}

template <typename T>
void fill_fns(ActFns<T>& f) {
  f.forward = &forward<T>;
  f.backward = &backward<T>;
  f.erf = &erf<T>;
  f.epilogue = &epilogue<T>;
  f.softmax_forward = &softmax_forward<T>;
  f.softmax_backward = &softmax_backward<T>;
}

inline void fill_table(ActTable& t) {
  fill_fns(t.f32);
  fill_fns(t.f64);
}

}  // namespace act_simd
}  // namespace PYDL_ISA_NS
}  // namespace pydl
