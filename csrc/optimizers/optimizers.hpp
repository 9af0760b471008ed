// Optimizer updates: one in-place pass over a parameter, its gradient and its state buffers,
// with PyTorch's update rules (torch.optim.SGD / Adam / AdamW; maximize=False, no amsgrad).
//
// Shapes: every array is n contiguous elements (the bindings flatten and check equal shapes).
// Dtypes: float32 and float64 (one entry each); all arrays of a call share the dtype.
// Assumptions (validated by the bindings): param and the state buffers are writeable and
// C-contiguous; no two arrays overlap; hyper-parameters are finite and in range.
// The per-call scalars below are computed once in double by the binding; the kernels round them to
// T and do the per-element arithmetic in T, as PyTorch does with Python-float scalars.
// Inner kernels (the table) are single-threaded; the entry points at the end split the elements
// over the thread pool. Every element gets the same arithmetic whoever runs it, so results are
// bit-identical for any thread count.
//
// sgd (d is a temporary):
//   d = g + weight_decay * p                          (skipped when weight_decay == 0)
//   if momentum != 0:
//     buf = first_step ? d : momentum * buf + (1 - dampening) * d
//     d   = nesterov ? d + momentum * buf : buf
//   p = p - lr * d
// adam (decoupled = false: Adam's L2 on the gradient; decoupled = true: AdamW's weight decay):
//   if decoupled: p = p * (1 - lr * weight_decay)      else g = g + weight_decay * p (wd != 0)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   p = p - step_size * m / (sqrt(v) / bc2_sqrt + eps)
//   with step_size = lr / (1 - beta1^step), bc2_sqrt = sqrt(1 - beta2^step), step >= 1.
//
// Finiteness (what the multi-parameter bindings build their all-or-nothing update from):
// abs_max_bits reads an array once and returns the bit pattern of its largest |x| with the sign
// bit cleared, as a non-negative integer: these order like |x|, and +inf < NaN, so a result at or
// above the bits of +inf means some element is not finite. adam_state_finite runs adam's
// arithmetic without storing anything and says whether every new m and v would be finite.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/fill.hpp"

namespace pydl {

struct SgdScalars {
  double lr = 0.0, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
  bool first_step = false;  // initialise the momentum buffer with d instead of updating it
};

struct AdamScalars {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  double step_size = 0.0;  // lr / (1 - beta1^step)
  double bc2_sqrt = 1.0;   // sqrt(1 - beta2^step)
  double decay = 1.0;      // 1 - lr * weight_decay (used when decoupled)
  bool decoupled = false;
};

template <typename T>
struct OptimFns {
  // param, momentum_buf (unused when momentum == 0), grad: (n,)
  void (*sgd)(T* param, T* momentum_buf, const T* grad, int64_t n,
              const SgdScalars& s) = nullptr;
  // param, exp_avg, exp_avg_sq, grad: (n,)
  void (*adam)(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, int64_t n,
               const AdamScalars& s) = nullptr;
  // x: (n,) -> bits of max |x| (0 for n == 0)
  int64_t (*abs_max_bits)(const T* x, int64_t n) = nullptr;
  // param, exp_avg, exp_avg_sq, grad: (n,), read only -> whether adam's new m and v are finite
  bool (*adam_state_finite)(const T* param, const T* exp_avg, const T* exp_avg_sq, const T* grad,
                            int64_t n, const AdamScalars& s) = nullptr;
};

struct OptimTable {
  OptimFns<float> f32;
  OptimFns<double> f64;
};

PYDL_DECLARE_FILL(fill_optimizers, OptimTable)

// Whole-array entry points (optimizers.cpp), with the kernels of the dispatched ISA. Arguments are
// taken by value so a call can be stored and repeated.
namespace optimizers {

// One parameter: param, momentum_buf (nullptr when momentum == 0), grad: (n,)
template <typename T>
void sgd(T* param, T* momentum_buf, const T* grad, int64_t n, SgdScalars s);
// One parameter: param, exp_avg, exp_avg_sq, grad: (n,)
template <typename T>
void adam(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, int64_t n, AdamScalars s);

// Many parameters in one step: item i has size[i] elements in each of its arrays and its own
// scalars. All vectors have one entry per item.
template <typename T>
struct SgdItems {
  std::vector<T*> param;
  std::vector<T*> momentum_buf;  // nullptr for an item whose momentum is 0
  std::vector<const T*> grad;
  std::vector<int64_t> size;
  std::vector<SgdScalars> scalars;
};

template <typename T>
struct AdamItems {
  std::vector<T*> param, exp_avg, exp_avg_sq;
  std::vector<const T*> grad;
  std::vector<int64_t> size;
  std::vector<AdamScalars> scalars;
};

// Why a multi-parameter step wrote nothing: kGrad, item's gradient holds a NaN or an infinity
// (the first such item); kState, the gradients are finite but item's new exp_avg or exp_avg_sq
// would not be (grad_abs_max is the item's largest |grad|). kNone: the step was applied.
struct Refusal {
  enum What { kNone, kGrad, kState };
  What what = kNone;
  size_t item = 0;
  double grad_abs_max = 0.0;
};

// All or nothing: every gradient is scanned first, and a non-finite one refuses the step; then
// every item gets exactly the arithmetic of sgd() (same bits), the elements of all items split
// over the pool in one dispatch.
template <typename T>
Refusal sgd_multi(SgdItems<T> items);

// All or nothing, as sgd_multi, plus kState: an item whose effective gradient |g + wd * p| could
// make the new m or v overflow (above sqrt(max) / 4 of T; below it they provably stay finite when
// the old ones are) gets a dry run of its update first. Each item gets exactly adam()'s bits.
template <typename T>
Refusal adam_multi(AdamItems<T> items);

}  // namespace optimizers

}  // namespace pydl
