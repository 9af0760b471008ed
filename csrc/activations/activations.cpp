// Whole-array activation entry points: the active ISA's kernels split across the thread pool.
#include "activations/activations.hpp"

#include "common/dispatch.hpp"
#include "common/parallel.hpp"

namespace pydl::activations {
namespace {

// Element-wise calls with fewer elements stay on one thread: below this, handing a chunk to the
// pool costs about as much as computing it (see benches/bench_activations.py).
constexpr int64_t kGrain = 32768;

template <typename T>
const ActFns<T>& fns() {
  return fns_of<T>(kernels().act);
}

// Rows of `cols` split across threads, about kGrain elements per chunk at least.
template <typename F>
void by_rows(int64_t rows, int64_t cols, F&& row_kernel) {
  const int64_t grain = kGrain / cols > 0 ? kGrain / cols : 1;
  parallel_chunks(rows, grain, row_kernel, /*align=*/1);
}

}  // namespace

template <typename T>
void forward(Act act, T param, const T* x, T* y, int64_t n) {
  const ActFns<T>& f = fns<T>();
  parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) { f.forward(act, param, x + b, y + b, e - b); });
}

template <typename T>
void backward(Act act, T param, const T* dy, const T* s, T* dx, int64_t n) {
  const ActFns<T>& f = fns<T>();
  parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) {
    f.backward(act, param, dy + b, s + b, dx + b, e - b);
  });
}

template <typename T>
void erf(bool complement, const T* x, T* y, int64_t n) {
  const ActFns<T>& f = fns<T>();
  parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) { f.erf(complement, x + b, y + b, e - b); });
}

template <typename T>
void softmax_forward(bool log_, const T* x, T* y, int64_t rows, int64_t cols) {
  const ActFns<T>& f = fns<T>();
  by_rows(rows, cols, [&](int64_t b, int64_t e) {
    f.softmax_forward(log_, x + b * cols, y + b * cols, e - b, cols);
  });
}

template <typename T>
void softmax_backward(bool log_, const T* dy, const T* y, T* dx, int64_t rows, int64_t cols) {
  const ActFns<T>& f = fns<T>();
  by_rows(rows, cols, [&](int64_t b, int64_t e) {
    f.softmax_backward(log_, dy + b * cols, y + b * cols, dx + b * cols, e - b, cols);
  });
}

#define PYDL_INSTANTIATE(T)                                                                      \
  template void forward<T>(Act, T, const T*, T*, int64_t);                                       \
  template void backward<T>(Act, T, const T*, const T*, T*, int64_t);                            \
  template void erf<T>(bool, const T*, T*, int64_t);                                             \
  template void softmax_forward<T>(bool, const T*, T*, int64_t, int64_t);                        \
  template void softmax_backward<T>(bool, const T*, const T*, T*, int64_t, int64_t);
PYDL_INSTANTIATE(float)
PYDL_INSTANTIATE(double)
#undef PYDL_INSTANTIATE

}  // namespace pydl::activations
