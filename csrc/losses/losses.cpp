// Whole-array loss entry points: fixed-size blocks on the pool, block sums added in block order.
#include "losses/losses.hpp"

#include "common/blocked.hpp"
#include "common/dispatch.hpp"

namespace pydl::losses {
namespace {

// Elements per reduction block. Block boundaries depend only on the shape, so the loss has the
// same bits for any thread count. 16K elements keep a block's inputs and gradient in L2 and make
// the pool's per-task cost negligible.
constexpr int64_t kBlockElems = int64_t{1} << 14;

// fn(d, a, b, len, dscale) over blocks of kBlockElems elements.
template <typename T, typename Fn>
double elementwise(Fn fn, T* d, const T* a, const T* b, int64_t n, double dscale) {
  double total[1];
  blocked_sums<1>((n + kBlockElems - 1) / kBlockElems, total, [&](int64_t blk, double* out) {
    const int64_t i0 = blk * kBlockElems;
    const int64_t len = n - i0 < kBlockElems ? n - i0 : kBlockElems;
    *out = fn(d + i0, a + i0, b + i0, len, dscale);
  });
  return total[0];
}

}  // namespace

template <typename T>
double softmax_xent(T* dlogits, const T* logits, const int64_t* labels, int64_t rows,
                    int64_t cols, double label_smoothing, double dscale) {
  const auto fn = fns_of<T>(kernels().loss).softmax_xent;
  const int64_t rows_per_block = cols > 0 && cols < kBlockElems ? kBlockElems / cols : 1;
  double total[1];
  blocked_sums<1>((rows + rows_per_block - 1) / rows_per_block, total, [&](int64_t b, double* out) {
    const int64_t r0 = b * rows_per_block;
    const int64_t nr = rows - r0 < rows_per_block ? rows - r0 : rows_per_block;
    *out = fn(dlogits + r0 * cols, logits + r0 * cols, labels + r0, nr, cols, label_smoothing,
              dscale);
  });
  return total[0];
}

template <typename T>
double bce_with_logits(T* dlogits, const T* logits, const T* targets, int64_t n, double dscale) {
  return elementwise(fns_of<T>(kernels().loss).bce_with_logits, dlogits, logits, targets, n,
                     dscale);
}

template <typename T>
double mse(T* dpred, const T* pred, const T* target, int64_t n, double dscale) {
  return elementwise(fns_of<T>(kernels().loss).mse, dpred, pred, target, n, dscale);
}

#define PYDL_INSTANTIATE(T)                                                                      \
  template double softmax_xent<T>(T*, const T*, const int64_t*, int64_t, int64_t, double,        \
                                  double);                                                       \
  template double bce_with_logits<T>(T*, const T*, const T*, int64_t, double);                   \
  template double mse<T>(T*, const T*, const T*, int64_t, double);
PYDL_INSTANTIATE(float)
PYDL_INSTANTIATE(double)
#undef PYDL_INSTANTIATE

}  // namespace pydl::losses
