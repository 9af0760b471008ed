// Losses: fused forward + backward (the loss value and its gradient in one pass over the data).
//
// Every entry handles a contiguous slice of the batch and returns the UNREDUCED sum of the
// per-element (or per-row) losses of that slice, accumulated in double; it writes the gradient of
// the slice scaled by `dscale` (1/N for reduction="mean", 1 for "sum"). The entry points at the
// end (losses.cpp) cut the batch into fixed-size blocks (sizes depend only on the shape), run the
// blocks on the thread pool and add the block sums in block order, so the loss is bit-identical
// for any thread count. Within a
// slice, sums use a fixed number of interleaved double accumulators combined in a fixed order.
//
// Dtypes: float32 and float64 (one entry each); per-element arithmetic in T, sums in double.
// The AVX2/AVX-512 entries of softmax_xent and bce_with_logits (losses_simd.hpp) flush exp terms
// that would be subnormal to 0; the generic loops keep them.
// Assumptions (validated by the bindings): all arrays are C-contiguous; outputs do not overlap the
// inputs; labels are int64 in [0, cols).
//
// softmax_xent   logits (rows, cols), labels (rows,), dlogits (rows, cols), eps = label smoothing:
//   q_c     = (1 - eps) * [c == label] + eps / cols                  (target distribution)
//   m       = max_c x_c,  s = sum_c exp(x_c - m)                     (stable for |x| up to 1e20)
//   loss    = sum_c q_c * (lse - x_c) = log(s) + sum_c q_c * (m - x_c)   per row
//   dlogits = (exp(x_c - m) / s - q_c) * dscale
//   With eps == 0 only the label's logit enters the loss (as in PyTorch, a -inf logit elsewhere
//   does not make the loss infinite). A NaN anywhere in a row makes that row's loss NaN.
// bce_with_logits  logits (n,), targets (n,), dlogits (n,):
//   loss    = max(x, 0) - x * t + log1p(exp(-|x|))                  (finite for |x| up to 1e3+)
//   dlogits = (sigmoid(x) - t) * dscale
// mse  pred (n,), target (n,), dpred (n,):
//   loss    = (p - t)^2
//   dpred   = 2 * (p - t) * dscale
#pragma once

#include <cstdint>

#include "common/fill.hpp"

namespace pydl {

template <typename T>
struct LossFns {
  double (*softmax_xent)(T* dlogits, const T* logits, const int64_t* labels, int64_t rows,
                         int64_t cols, double label_smoothing, double dscale) = nullptr;
  double (*bce_with_logits)(T* dlogits, const T* logits, const T* targets, int64_t n,
                            double dscale) = nullptr;
  double (*mse)(T* dpred, const T* pred, const T* target, int64_t n, double dscale) = nullptr;
};

struct LossTable {
  LossFns<float> f32;
  LossFns<double> f64;
};

PYDL_DECLARE_FILL(fill_losses, LossTable)

// Whole-array entry points (losses.cpp): the table entries above over the whole batch, in blocks
// on the pool; they return the unreduced total, bit-identical for any thread count.
namespace losses {
template <typename T>
double softmax_xent(T* dlogits, const T* logits, const int64_t* labels, int64_t rows,
                    int64_t cols, double label_smoothing, double dscale);
template <typename T>
double bce_with_logits(T* dlogits, const T* logits, const T* targets, int64_t n, double dscale);
template <typename T>
double mse(T* dpred, const T* pred, const T* target, int64_t n, double dscale);
}  // namespace losses

}  // namespace pydl
