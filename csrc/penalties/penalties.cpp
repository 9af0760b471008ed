// Whole-array penalty entry points: fixed-order block sums and a pool-split gradient update.
#include "penalties/penalties.hpp"

#include "common/blocked.hpp"
#include "common/dispatch.hpp"
#include "common/parallel.hpp"

namespace pydl::penalties {
namespace {

// Elements per partial sum. Fixed, so the summation order (and so the bits of the value) does
// not depend on the thread count; large enough that a block costs far more than a task hand-off.
constexpr int64_t kBlock = 1 << 15;
// Elements per thread below which splitting the gradient update costs more than it saves.
constexpr int64_t kGrain = 16384;

}  // namespace

template <typename T>
double value(const T* w, int64_t n, double wd, double l1_ratio) {
  const auto sums = fns_of<T>(kernels().penalty).sums;
  double total[2];
  blocked_sums<2>((n + kBlock - 1) / kBlock, total, [&](int64_t b, double* out) {
    const int64_t begin = b * kBlock;
    sums(out, w + begin, n - begin < kBlock ? n - begin : kBlock);
  });
  // A term whose weight is 0 is left out rather than multiplied by 0, so L1 and L2 give exactly
  // wd * sum|w| and wd * sum w^2 even when the other sum is inf.
  double v = 0.0;
  if (l1_ratio != 0.0) v += l1_ratio * total[0];
  if (l1_ratio != 1.0) v += (1.0 - l1_ratio) * total[1];
  return wd * v;
}

template <typename T>
void backward(T* grad, const T* w, int64_t n, double wd, double l1_ratio) {
  const auto bwd = fns_of<T>(kernels().penalty).backward;
  const T l1 = static_cast<T>(wd * l1_ratio);
  const T l2x2 = static_cast<T>(2.0 * wd * (1.0 - l1_ratio));
  parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) { bwd(grad + b, w + b, l1, l2x2, e - b); });
}

template double value<float>(const float*, int64_t, double, double);
template double value<double>(const double*, int64_t, double, double);
template void backward<float>(float*, const float*, int64_t, double, double);
template void backward<double>(double*, const double*, int64_t, double, double);

}  // namespace pydl::penalties
