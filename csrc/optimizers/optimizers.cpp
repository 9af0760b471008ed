// Whole-array optimizer entry points: the dispatched inner kernels split over the thread pool, and
// the all-or-nothing multi-parameter steps (finiteness scans first, then one pool dispatch for the
// elements of all items).
#include "optimizers/optimizers.hpp"

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>

#include "common/dispatch.hpp"
#include "common/parallel.hpp"

namespace pydl::optimizers {
namespace {

// Elements per task (~15 us of streaming 3-4 arrays): smaller tasks made a small model's update
// slower with 2 threads than with 1 on a busy machine, where the worker may need waking.
constexpr int64_t kGrain = int64_t{1} << 17;

// The elements of all items form one index range [0, start.back()); item i owns
// [start[i], start[i + 1]). Calls f(i, offset, count) for the part of each item inside [b, e).
template <typename F>
void for_items_in(const std::vector<int64_t>& start, int64_t b, int64_t e, F&& f) {
  const size_t n = start.size() - 1;
  // The first item ending after b (items are few; a linear walk is cheaper than a search).
  size_t i = 0;
  while (i < n && start[i + 1] <= b) ++i;
  for (; i < n && start[i] < e; ++i) {
    const int64_t lo = b > start[i] ? b : start[i];
    const int64_t hi = e < start[i + 1] ? e : start[i + 1];
    if (lo < hi) f(i, lo - start[i], hi - lo);
  }
}

std::vector<int64_t> starts_of(const std::vector<int64_t>& size) {
  std::vector<int64_t> start(size.size() + 1, 0);
  for (size_t i = 0; i < size.size(); ++i) start[i + 1] = start[i] + size[i];
  return start;
}

// Calls f(i, offset, count) over the elements of all items, split over the pool in one dispatch.
template <typename F>
void for_all_items(const std::vector<int64_t>& start, F&& f) {
  parallel_chunks(start.back(), kGrain, [&](int64_t b, int64_t e) { for_items_in(start, b, e, f); });
}

// Bit patterns of max |x| of every item's array (see OptimFns::abs_max_bits), scanned in parallel.
// A max does not depend on the chunking, so neither does the result.
template <typename T>
std::vector<int64_t> abs_max_per_item(const OptimFns<T>& fns, const std::vector<int64_t>& start,
                                      const std::vector<const T*>& arrays) {
  const size_t n = start.size() - 1;
  std::unique_ptr<std::atomic<int64_t>[]> best(new std::atomic<int64_t>[n]);
  for (size_t i = 0; i < n; ++i) best[i].store(0, std::memory_order_relaxed);
  for_all_items(start, [&](size_t i, int64_t off, int64_t count) {
    const int64_t bits = fns.abs_max_bits(arrays[i] + off, count);
    int64_t seen = best[i].load(std::memory_order_relaxed);
    while (bits > seen && !best[i].compare_exchange_weak(seen, bits)) {
    }
  });
  std::vector<int64_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = best[i].load(std::memory_order_relaxed);
  return out;
}

template <typename T>
using Bits = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

template <typename T>
int64_t bits_of(T x) {
  Bits<T> b;
  std::memcpy(&b, &x, sizeof b);
  return static_cast<int64_t>(b);
}

template <typename T>
T from_bits(int64_t bits) {
  const Bits<T> b = static_cast<Bits<T>>(bits);
  T x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

// The first item whose gradient holds a NaN or an infinity (bits at or above those of +inf).
template <typename T>
Refusal first_non_finite(const std::vector<int64_t>& grad_bits) {
  const int64_t inf = bits_of(std::numeric_limits<T>::infinity());
  Refusal r;
  for (size_t i = 0; i < grad_bits.size(); ++i) {
    if (grad_bits[i] >= inf) {
      r.what = Refusal::kGrad;
      r.item = i;
      break;
    }
  }
  return r;
}

}  // namespace

template <typename T>
void sgd(T* param, T* momentum_buf, const T* grad, int64_t n, SgdScalars s) {
  const auto kernel = fns_of<T>(kernels().optim).sgd;
  parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) {
    kernel(param + b, momentum_buf ? momentum_buf + b : nullptr, grad + b, e - b, s);
  });
}

template <typename T>
void adam(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, int64_t n, AdamScalars s) {
  const auto kernel = fns_of<T>(kernels().optim).adam;
  parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) {
    kernel(param + b, exp_avg + b, exp_avg_sq + b, grad + b, e - b, s);
  });
}

template <typename T>
Refusal sgd_multi(SgdItems<T> items) {
  if (items.size.empty()) return {};
  const OptimFns<T>& fns = fns_of<T>(kernels().optim);
  const std::vector<int64_t> start = starts_of(items.size);
  const Refusal r = first_non_finite<T>(abs_max_per_item(fns, start, items.grad));
  if (r.what != Refusal::kNone) return r;
  for_all_items(start, [&](size_t i, int64_t off, int64_t count) {
    T* buf = items.momentum_buf[i];
    fns.sgd(items.param[i] + off, buf ? buf + off : nullptr, items.grad[i] + off, count,
            items.scalars[i]);
  });
  return r;
}

// Pass 1 scans the gradients (and, for coupled weight decay, the parameters). It also bounds each
// item's effective gradient |g + wd * p|: below sqrt(max) / 4 the new m and v are provably finite
// when the old ones are (v <= beta2 * v_old + (1 - beta2) * max / 16 stays below max), so the
// update runs straight away. Only an item above the bound (a gradient near 1e19 in float32) gets
// a dry run of its update that checks the new m and v before anything is written. The common case
// thus reads the gradients twice and everything else once.
template <typename T>
Refusal adam_multi(AdamItems<T> items) {
  const size_t n = items.size.size();
  if (n == 0) return {};
  const OptimFns<T>& fns = fns_of<T>(kernels().optim);
  const std::vector<int64_t> start = starts_of(items.size);
  const std::vector<int64_t> grad_bits = abs_max_per_item(fns, start, items.grad);
  Refusal r = first_non_finite<T>(grad_bits);
  if (r.what != Refusal::kNone) return r;
  bool coupled = false;
  for (const AdamScalars& s : items.scalars) coupled |= !s.decoupled && s.weight_decay != 0.0;
  std::vector<int64_t> param_bits;
  if (coupled) {
    param_bits = abs_max_per_item(
        fns, start, std::vector<const T*>(items.param.begin(), items.param.end()));
  }
  const double safe = std::sqrt(static_cast<double>(std::numeric_limits<T>::max())) / 4.0;
  for (size_t i = 0; i < n; ++i) {
    const AdamScalars& s = items.scalars[i];
    double bound = static_cast<double>(from_bits<T>(grad_bits[i]));
    if (!s.decoupled && s.weight_decay != 0.0) {
      bound += s.weight_decay * static_cast<double>(from_bits<T>(param_bits[i]));
    }
    if (bound <= safe) continue;  // NaN (a non-finite parameter) takes the dry run
    std::atomic<bool> finite{true};
    T* const p = items.param[i];
    T* const m = items.exp_avg[i];
    T* const v = items.exp_avg_sq[i];
    const T* const g = items.grad[i];
    parallel_chunks(items.size[i], kGrain, [&](int64_t b, int64_t e) {
      if (!fns.adam_state_finite(p + b, m + b, v + b, g + b, e - b, s))
        finite.store(false, std::memory_order_relaxed);
    });
    if (!finite.load()) {
      r.what = Refusal::kState;
      r.item = i;
      r.grad_abs_max = static_cast<double>(from_bits<T>(grad_bits[i]));
      return r;
    }
  }
  for_all_items(start, [&](size_t i, int64_t off, int64_t count) {
    fns.adam(items.param[i] + off, items.exp_avg[i] + off, items.exp_avg_sq[i] + off,
             items.grad[i] + off, count, items.scalars[i]);
  });
  return r;
}

template void sgd<float>(float*, float*, const float*, int64_t, SgdScalars);
template void sgd<double>(double*, double*, const double*, int64_t, SgdScalars);
template void adam<float>(float*, float*, float*, const float*, int64_t, AdamScalars);
template void adam<double>(double*, double*, double*, const double*, int64_t, AdamScalars);
template Refusal sgd_multi<float>(SgdItems<float>);
template Refusal sgd_multi<double>(SgdItems<double>);
template Refusal adam_multi<float>(AdamItems<float>);
template Refusal adam_multi<double>(AdamItems<double>);

}  // namespace pydl::optimizers
