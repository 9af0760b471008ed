// Vector versions of the transcendental loss kernels (softmax_xent, bce_with_logits) over
// common/simd.hpp, for losses_avx2.cpp and losses_avx512.cpp only (simd.hpp needs their ISA
// flags). The generic loops in losses_impl.hpp stay the reference; mse keeps them, as the
// compiler already vectorises it. Same formulas, special values and block contract as
// losses/losses.hpp: per-element arithmetic in T, sums in double lanes combined in a fixed order,
// so a slice's result depends only on its data.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/isa.hpp"
#include "common/simd.hpp"
#include "losses/losses.hpp"

namespace pydl {
namespace PYDL_ISA_NS {
namespace loss_simd {

using simd::Vd;
using simd::Vec;

// A double sum of vectors of T: float lanes are widened (exactly) into two double accumulators.
struct DoubleSum {
  Vd lo = simd::zero<Vd>(), hi = simd::zero<Vd>();
  void add(Vd v) { lo = lo + v; }
  void add(simd::Vf v) {
    Vd a, b;
    simd::widen(v, a, b);
    lo = lo + a;
    hi = hi + b;
  }
  double total() const { return simd::reduce_add(lo + hi); }
};

// m - x summed in double. Float lanes are widened before subtracting, so every term is exact as
// in the reference.
inline void add_shift(DoubleSum& acc, Vd m, Vd x) { acc.add(m - x); }
inline void add_shift(DoubleSum& acc, Vd m, simd::Vf x) {
  Vd a, b;
  simd::widen(x, a, b);
  acc.lo = acc.lo + (m - a);
  acc.hi = acc.hi + (m - b);
}

// logits, dlogits: (rows, cols); labels: (rows,) in [0, cols)
template <typename T>
double softmax_xent(T* dlogits, const T* logits, const int64_t* labels, int64_t rows,
                    int64_t cols, double label_smoothing, double dscale) {
  using V = Vec<T>;
  constexpr int64_t W = V::W;
  const int64_t tail = cols % W, full = cols - tail;
  const double eps = label_smoothing;
  const V q_off = simd::set1(T(eps / double(cols) * dscale));  // the eps/C share of every class
  const T q_on = T((1.0 - eps) * dscale);                      // the labelled class's extra share
  const V neg_inf = simd::set1(-T(INFINITY));
  T lane_index[W];
  for (int i = 0; i < W; ++i) lane_index[i] = T(i);
  const V lane = simd::loadu(lane_index);
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = logits + r * cols;
    T* d = dlogits + r * cols;
    const int64_t y = labels[r];
    // Row max; a NaN may be skipped here, it still makes its own exp term (and so s) NaN.
    V mv = neg_inf;
    for (int64_t c = 0; c < full; c += W) mv = simd::max(mv, simd::loadu(x + c));
    if (tail) mv = simd::max(mv, simd::load_partial(x + full, tail, -T(INFINITY)));
    const T m = simd::reduce_max(mv);
    mv = simd::set1(m);
    // d holds exp(x - m) until the scaling pass; the -inf padding of the tail adds exp(-inf) = 0.
    // exp_nonpositive flushes terms below the smallest normal (2^-126 for float) to 0: they
    // cannot change s >= 1, and their gradient entries are far below the resolution of the row.
    DoubleSum s_acc;
    for (int64_t c = 0; c < full; c += W) {
      V e = simd::exp_nonpositive(simd::loadu(x + c) - mv);
      simd::storeu(d + c, e);
      s_acc.add(e);
    }
    V e_tail = simd::zero<V>();
    if (tail) {
      e_tail = simd::exp_nonpositive(simd::load_partial(x + full, tail, -T(INFINITY)) - mv);
      s_acc.add(e_tail);
    }
    const double s = s_acc.total();
    double loss = std::log(s) + (1.0 - eps) * (double(m) - double(x[y]));
    if (eps > 0.0) {
      // Tail lanes padded with m add m - m = 0.
      DoubleSum shift;
      const Vd md = simd::set1(double(m));
      for (int64_t c = 0; c < full; c += W) add_shift(shift, md, simd::loadu(x + c));
      if (tail) add_shift(shift, md, simd::load_partial(x + full, tail, m));
      loss += eps / double(cols) * shift.total();
    }
    // The labelled class's q_on goes into the vector holding it: reading d[y] back after a
    // (masked) vector store would stall on store forwarding, once per row.
    const int64_t y_chunk = y - y % W;
    const V q_label = q_off + simd::select(simd::eq(lane, simd::set1(T(y - y_chunk))),
                                           simd::set1(q_on), simd::zero<V>());
    const V scale = simd::set1(T(dscale / s));
    for (int64_t c = 0; c < full; c += W)
      simd::storeu(d + c, simd::loadu(d + c) * scale - (c == y_chunk ? q_label : q_off));
    if (tail)
      simd::store_partial(d + full, e_tail * scale - (full == y_chunk ? q_label : q_off), tail);
    total += loss;
  }
  return total;
}

// The loss terms and gradient of one vector of logits x and targets t; see losses.hpp.
template <typename V>
V bce_terms(V x, V t, V scale, V& dlogits) {
  using T = typename V::T;
  V z = simd::zero<V>();
  // In [0, 1]: never overflows, even for |x| = 1e30. Flushing a subnormal e (|x| > 87 in float)
  // to 0 only drops a loss term and gradient below 1e-38.
  V e = simd::exp_nonpositive(z - simd::abs(x));
  V inv = simd::set1(T(1)) / (simd::set1(T(1)) + e);
  V sig = simd::select(simd::ge(x, z), inv, e * inv);
  dlogits = (sig - t) * scale;
  // max keeps a NaN x (second operand).
  return simd::max(z, x) - x * t + simd::log1p_unit(e);
}

// logits, targets, dlogits: (n,)
template <typename T>
double bce_with_logits(T* dlogits, const T* logits, const T* targets, int64_t n, double dscale) {
  using V = Vec<T>;
  constexpr int64_t W = V::W;
  const V scale = simd::set1(T(dscale));
  DoubleSum acc;
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    V d;
    acc.add(bce_terms(simd::loadu(logits + i), simd::loadu(targets + i), scale, d));
    simd::storeu(dlogits + i, d);
  }
  if (i < n) {
    // Padding lanes get x = 1e30, t = 1, whose loss term is exactly 0: x - x + log1p(0).
    const int64_t r = n - i;
    V d;
    acc.add(bce_terms(simd::load_partial(logits + i, r, T(1e30)),
                      simd::load_partial(targets + i, r, T(1)), scale, d));
    simd::store_partial(dlogits + i, d, r);
  }
  return acc.total();
}

template <typename T>
void fill_fns(LossFns<T>& f) {
  f.softmax_xent = &softmax_xent<T>;
  f.bce_with_logits = &bce_with_logits<T>;
}

}  // namespace loss_simd

// Overrides the transcendental entries of a table already filled by fill_loss_table.
inline void fill_loss_table_simd(LossTable& t) {
  loss_simd::fill_fns(t.f32);
  loss_simd::fill_fns(t.f64);
}

}  // namespace PYDL_ISA_NS
}  // namespace pydl
