// The loss kernels, written once as plain loops and compiled into the generic, AVX2 and AVX-512
// translation units (losses_ref.cpp, losses_avx2.cpp, losses_avx512.cpp); the ISA flags let the
// compiler vectorise what it can. Formulas and assumptions: losses/losses.hpp.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/isa.hpp"
#include "losses/losses.hpp"

namespace pydl {
namespace PYDL_ISA_NS {
namespace loss_detail {

// Interleaved double accumulators: independent add chains the compiler can vectorise, combined
// in a fixed order so the result does not depend on where a slice starts or who runs it.
constexpr int kLanes = 8;

// Sum of f(i) over i in [0, n), in double. f is called exactly once per i, in increasing i, so it
// may also write an output element.
template <typename F>
inline double lane_sum(int64_t n, F f) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += f(i + l);
  for (int l = 0; l < kLanes - 1 && i + l < n; ++l) acc[l] += f(i + l);  // the < kLanes tail
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

// logits, dlogits: (rows, cols); labels: (rows,) in [0, cols)
template <typename T>
double softmax_xent(T* dlogits, const T* logits, const int64_t* labels, int64_t rows,
                    int64_t cols, double label_smoothing, double dscale) {
  const double eps = label_smoothing;
  const T q_off = T(eps / double(cols) * dscale);  // the eps/C share every class gets
  const T q_on = T((1.0 - eps) * dscale);          // the extra share of the labelled class
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = logits + r * cols;
    T* d = dlogits + r * cols;
    const int64_t y = labels[r];
    T m = x[0];
    for (int64_t c = 1; c < cols; ++c) m = x[c] > m ? x[c] : m;
    // d holds exp(x - m) until the final scaling pass.
    const double s = lane_sum(cols, [&](int64_t c) {
      const T e = std::exp(x[c] - m);
      d[c] = e;
      return double(e);
    });
    double loss = std::log(s) + (1.0 - eps) * (double(m) - double(x[y]));
    if (eps > 0.0) {
      const double shift = lane_sum(cols, [&](int64_t c) { return double(m) - double(x[c]); });
      loss += eps / double(cols) * shift;
    }
    const T scale = T(dscale / s);
    for (int64_t c = 0; c < cols; ++c) d[c] = d[c] * scale - q_off;
    d[y] -= q_on;
    total += loss;
  }
  return total;
}

// logits, targets, dlogits: (n,)
template <typename T>
double bce_with_logits(T* dlogits, const T* logits, const T* targets, int64_t n, double dscale) {
  const T scale = T(dscale);
  return lane_sum(n, [&](int64_t i) {
    const T x = logits[i], t = targets[i];
    const T e = std::exp(-std::fabs(x));  // in [0, 1]: never overflows, even for |x| = 1e30
    const T inv = T(1) / (T(1) + e);
    const T sig = x >= T(0) ? inv : e * inv;
    dlogits[i] = (sig - t) * scale;
    return double((x > T(0) ? x : T(0)) - x * t + std::log1p(e));
  });
}

// pred, target, dpred: (n,)
template <typename T>
double mse(T* dpred, const T* pred, const T* target, int64_t n, double dscale) {
  const T scale = T(2.0 * dscale);
  return lane_sum(n, [&](int64_t i) {
    const T diff = pred[i] - target[i];
    dpred[i] = diff * scale;
    return double(diff) * double(diff);
  });
}

template <typename T>
void fill_fns(LossFns<T>& f) {
  f.softmax_xent = &softmax_xent<T>;
  f.bce_with_logits = &bce_with_logits<T>;
  f.mse = &mse<T>;
}

}  // namespace loss_detail

inline void fill_loss_table(LossTable& t) {
  loss_detail::fill_fns(t.f32);
  loss_detail::fill_fns(t.f64);
}

}  // namespace PYDL_ISA_NS
}  // namespace pydl
