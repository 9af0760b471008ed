// Convolution (Conv1d / Conv2d, PyTorch's cross-correlation): forward, data and weight gradients.
//
// Shapes (a 1-d convolution is the 2-d one with H = KH = OH = 1):
//   x (N, C_in, H, W), w (C_out, C_in / G, KH, KW), b (C_out,), y (N, C_out, OH, OW)
//   OH = (H + 2 * PH - DH * (KH - 1) - 1) / SH + 1 (and the same for W), G = groups.
// y[n, co, i, j] = b[co] + sum_{ci, p, q} w[co, ci, p, q] * x[n, g * C_in/G + ci,
//                                                         i * SH - PH + p * DH, j * SW - PW + q * DW]
// with co in group g = co / (C_out / G) and x = 0 outside the input (zero padding).
//
// Dtypes: float32 and float64 (one entry each). All arrays are C-contiguous and do not overlap
// (validated by the bindings).
//
// Implementations: the generic entries are the plain direct loops (the reference and oracle).
// The AVX2/AVX-512 entries (conv_gemm.hpp) lower each sample and group to GEMMs through the
// public GEMM entry (gemm/gemm.hpp): a tile of output positions is unfolded into a small per-thread
// workspace (im2col of that tile only, at most kColTileElems elements; a 1x1, stride-1, unpadded
// convolution reads x in place) and multiplied with the weights.
//
// Threads: forward and data gradient run one task per sample (samples never share outputs); the
// weight gradient sums samples in blocks whose boundaries depend only on N, each block into its own
// partial buffer, and adds the partials in block order. Every result is therefore bit-identical for
// any thread count.
#pragma once

#include <cstdint>

#include "common/fill.hpp"

namespace pydl {

struct ConvShape {
  int64_t n = 0, c_in = 0, h = 0, w = 0;    // input
  int64_t c_out = 0, kh = 0, kw = 0;        // weight (C_out, C_in / groups, KH, KW)
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  int64_t groups = 1;
  int64_t oh = 0, ow = 0;                   // output
};

template <typename T>
struct ConvFns {
  // y (N, C_out, OH, OW) = conv(x, w) + b; b may be nullptr.
  void (*forward)(T* y, const T* x, const T* w, const T* b, const ConvShape& s) = nullptr;
  // dx (N, C_in, H, W) = gradient w.r.t. x of sum(y * dy) (overwritten).
  void (*backward_data)(T* dx, const T* dy, const T* w, const ConvShape& s) = nullptr;
  // dw (C_out, C_in / G, KH, KW) and db (C_out,) (either nullptr: not wanted) = gradients w.r.t.
  // w and b of sum(y * dy) (overwritten).
  void (*backward_weight)(T* dw, T* db, const T* dy, const T* x, const ConvShape& s) = nullptr;
};

struct ConvTable {
  ConvFns<float> f32;
  ConvFns<double> f64;
};

PYDL_DECLARE_FILL(fill_conv, ConvTable)

}  // namespace pydl
