// Pooling over the last two axes of (planes, H, W) arrays (planes = N * C; 1-d pooling is the
// 2-d one with H = KH = OH = 1): max, average and adaptive average, forward and backward.
//
//   max_forward    y (P, OH, OW), idx (P, OH, OW) = max of each KH x KW window of x (P, H, W)
//                  (stride SH/SW, implicit -inf padding PH/PW); idx = ih * W + iw of the maximum,
//                  the first one on ties; a NaN in a window wins (as in PyTorch).
//   max_backward   dx (P, H, W) = dy scattered to idx (overwritten).
//   avg_forward    y = window sum / (KH * KW), zero padding counted (count_include_pad=True; with
//                  PyTorch's output size every window lies inside the padded input).
//   avg_backward   dx (overwritten).
//   adaptive_avg_forward  output cell (i, j) averages rows [floor(i*H/OH), ceil((i+1)*H/OH)) and
//                  the same for columns (PyTorch's adaptive pooling windows).
//   adaptive_avg_backward dx (overwritten).
// OH = (H + 2 * PH - KH) / SH + 1 (and the same for W), validated by the bindings.
//
// Dtypes: float32 and float64; arrays C-contiguous, not overlapping. One task per block of planes;
// planes never share outputs, so results are bit-identical for any thread count.
#pragma once

#include <cstdint>

#include "common/fill.hpp"

namespace pydl {

struct PoolShape {
  int64_t planes = 0, h = 0, w = 0;
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0;  // unused by adaptive pooling
  int64_t oh = 0, ow = 0;
};

template <typename T>
struct PoolFns {
  void (*max_forward)(T* y, int64_t* idx, const T* x, const PoolShape& s) = nullptr;
  void (*max_backward)(T* dx, const T* dy, const int64_t* idx, const PoolShape& s) = nullptr;
  void (*avg_forward)(T* y, const T* x, const PoolShape& s) = nullptr;
  void (*avg_backward)(T* dx, const T* dy, const PoolShape& s) = nullptr;
  void (*adaptive_avg_forward)(T* y, const T* x, const PoolShape& s) = nullptr;
  void (*adaptive_avg_backward)(T* dx, const T* dy, const PoolShape& s) = nullptr;
};

struct PoolTable {
  PoolFns<float> f32;
  PoolFns<double> f64;
};

PYDL_DECLARE_FILL(fill_pool, PoolTable)

}  // namespace pydl
