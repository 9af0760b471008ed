// The optimizer kernels, written once as plain loops and compiled into the generic, AVX2 and
// AVX-512 translation units (optimizers_ref.cpp, optimizers_avx2.cpp, optimizers_avx512.cpp); the
// ISA flags let the compiler vectorise them. Formulas and assumptions: optimizers/optimizers.hpp.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "common/isa.hpp"
#include "optimizers/optimizers.hpp"

namespace pydl {
namespace PYDL_ISA_NS {
namespace optim_detail {

// The flags are template parameters so each combination is its own branch-free loop that the
// compiler can vectorise; sgd() picks the instantiation once per call.
template <typename T, bool kDecay, bool kMomentum, bool kNesterov>
void sgd_loop(T* __restrict param, T* __restrict buf, const T* __restrict grad, int64_t n,
              const SgdScalars& s) {
  const T lr = T(s.lr), wd = T(s.weight_decay), mom = T(s.momentum);
  const T keep = T(1.0 - s.dampening);
  const bool first = s.first_step;
  for (int64_t i = 0; i < n; ++i) {
    T d = grad[i];
    if (kDecay) d += wd * param[i];
    if (kMomentum) {
      const T b = first ? d : mom * buf[i] + keep * d;
      buf[i] = b;
      d = kNesterov ? d + mom * b : b;
    }
    param[i] -= lr * d;
  }
}

// param, momentum_buf, grad: (n,)
template <typename T>
void sgd(T* param, T* momentum_buf, const T* grad, int64_t n, const SgdScalars& s) {
  const bool decay = s.weight_decay != 0.0;
  if (s.momentum == 0.0) {
    (decay ? sgd_loop<T, true, false, false> : sgd_loop<T, false, false, false>)(
        param, momentum_buf, grad, n, s);
  } else if (s.nesterov) {
    (decay ? sgd_loop<T, true, true, true> : sgd_loop<T, false, true, true>)(
        param, momentum_buf, grad, n, s);
  } else {
    (decay ? sgd_loop<T, true, true, false> : sgd_loop<T, false, true, false>)(
        param, momentum_buf, grad, n, s);
  }
}

// How weight decay enters Adam. kNone when weight_decay == 0, so that (as in PyTorch) no 0 * p
// term turns an infinite parameter into NaN.
enum class Decay { kNone, kL2, kDecoupled };

// kStore = false is the dry run of adam_state_finite: the same arithmetic, nothing written, and
// the return value says whether every new m and v is finite (x - x is NaN exactly when x is
// infinite or NaN, and a NaN survives the sum). kStore = true is the update; it returns true.
template <typename T, Decay kDecay, bool kStore>
bool adam_loop(T* __restrict param, T* __restrict m, T* __restrict v, const T* __restrict grad,
               int64_t n, const AdamScalars& s) {
  const T beta1 = T(s.beta1), beta2 = T(s.beta2);
  const T one_m_beta1 = T(1.0 - s.beta1), one_m_beta2 = T(1.0 - s.beta2);
  const T eps = T(s.eps), wd = T(s.weight_decay), decay = T(s.decay);
  const T step_size = T(s.step_size), bc2_sqrt = T(s.bc2_sqrt);
  T bad = T(0);
  for (int64_t i = 0; i < n; ++i) {
    T p = param[i];
    T g = grad[i];
    if (kDecay == Decay::kDecoupled) p *= decay;
    if (kDecay == Decay::kL2) g += wd * p;
    const T mi = beta1 * m[i] + one_m_beta1 * g;
    const T vi = beta2 * v[i] + one_m_beta2 * g * g;
    if (kStore) {
      m[i] = mi;
      v[i] = vi;
      param[i] = p - step_size * mi / (std::sqrt(vi) / bc2_sqrt + eps);
    } else {
      bad += (mi - mi) + (vi - vi);
    }
  }
  return bad == T(0);
}

template <bool kStore, typename T>
auto adam_variant(const AdamScalars& s) {
  return s.weight_decay == 0.0 ? adam_loop<T, Decay::kNone, kStore>
         : s.decoupled         ? adam_loop<T, Decay::kDecoupled, kStore>
                               : adam_loop<T, Decay::kL2, kStore>;
}

// param, exp_avg, exp_avg_sq, grad: (n,)
template <typename T>
void adam(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, int64_t n, const AdamScalars& s) {
  adam_variant<true, T>(s)(param, exp_avg, exp_avg_sq, grad, n, s);
}

// param, exp_avg, exp_avg_sq, grad: (n,), nothing written. The casts drop const only for the
// shared loop's signature: with kStore = false it never stores.
template <typename T>
bool adam_state_finite(const T* param, const T* exp_avg, const T* exp_avg_sq, const T* grad,
                       int64_t n, const AdamScalars& s) {
  return adam_variant<false, T>(s)(const_cast<T*>(param), const_cast<T*>(exp_avg),
                                   const_cast<T*>(exp_avg_sq), grad, n, s);
}

// x: (n,). An integer max over the bit patterns (sign cleared) rather than a float max: it
// vectorises without reassociation flags, and NaN and inf simply compare largest.
template <typename T>
int64_t abs_max_bits(const T* x, int64_t n) {
  using U = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  constexpr U kMagnitude = std::numeric_limits<U>::max();  // every bit but the sign
  U best = 0;
  for (int64_t i = 0; i < n; ++i) {
    U b;
    std::memcpy(&b, x + i, sizeof b);
    b &= kMagnitude;
    best = b > best ? b : best;
  }
  return static_cast<int64_t>(best);
}

template <typename T>
void fill_fns(OptimFns<T>& f) {
  f.sgd = &sgd<T>;
  f.adam = &adam<T>;
  f.abs_max_bits = &abs_max_bits<T>;
  f.adam_state_finite = &adam_state_finite<T>;
}

}  // namespace optim_detail

inline void fill_optim_table(OptimTable& t) {
  optim_detail::fill_fns(t.f32);
  optim_detail::fill_fns(t.f64);
}

}  // namespace PYDL_ISA_NS
}  // namespace pydl
