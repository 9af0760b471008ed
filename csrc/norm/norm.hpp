// Batch normalisation and layer normalisation, fused forward and backward.
//
// batch_norm_forward   x, y (N, C, S) (S = spatial size, 1 for (N, C) inputs); w, b (C,) or
//                      nullptr (affine=False); mean, invstd (C,) written for the backward.
//   training:  mean_c = sum x / M, var_c = sum (x - mean_c)^2 / M over M = N * S values,
//              invstd_c = 1 / sqrt(var_c + eps); running_mean/var (nullptr: not tracked) become
//              (1 - momentum) * old + momentum * (mean_c, var_c * M / (M - 1))  (unbiased; M >= 2).
//   eval:      mean_c = running_mean_c, invstd_c = 1 / sqrt(running_var_c + eps).
//   y = (x - mean_c) * invstd_c * w_c + b_c.
// batch_norm_backward  dx (N, C, S) (nullptr: not wanted), dw, db (C,) (nullptr: not wanted,
//                      overwritten otherwise), from dy, x, the forward's mean/invstd and w:
//   xhat = (x - mean) * invstd, db = sum dy, dw = sum dy * xhat,
//   training: dx = w * invstd * (dy - db / M - xhat * dw / M);  eval: dx = w * invstd * dy.
// layer_norm_forward   x, y (M, D); w, b (D,) or nullptr; mean, rstd (M,) written:
//   y = (x - mean_r) * rstd_r * w + b with biased variance over each row of D values.
// layer_norm_backward  dx (M, D), dw, db (D,) (each nullptr: not wanted; overwritten):
//   g = dy * w, dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), dw = sum_rows dy * xhat,
//   db = sum_rows dy.
//
// Dtypes: float32 and float64; statistics and sums are accumulated in double. Arrays are
// C-contiguous and do not overlap. Batch norm runs one task per block of channels; layer norm one
// task per fixed block of rows, the dw/db partials of the blocks added in block order: results are
// bit-identical for any thread count.
#pragma once

#include <cstdint>

#include "common/fill.hpp"

namespace pydl {

template <typename T>
struct NormFns {
  void (*batch_norm_forward)(T* y, T* mean, T* invstd, T* running_mean, T* running_var,
                             const T* x, const T* w, const T* b, int64_t n, int64_t c,
                             int64_t s, double eps, double momentum, bool training) = nullptr;
  void (*batch_norm_backward)(T* dx, T* dw, T* db, const T* dy, const T* x, const T* mean,
                              const T* invstd, const T* w, int64_t n, int64_t c, int64_t s,
                              bool training) = nullptr;
  void (*layer_norm_forward)(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b,
                             int64_t m, int64_t d, double eps) = nullptr;
  void (*layer_norm_backward)(T* dx, T* dw, T* db, const T* dy, const T* x, const T* mean,
                              const T* rstd, const T* w, int64_t m, int64_t d) = nullptr;
};

struct NormTable {
  NormFns<float> f32;
  NormFns<double> f64;
};

PYDL_DECLARE_FILL(fill_norm, NormTable)

}  // namespace pydl
