// Convolution lowered to GEMMs (the AVX2/AVX-512 entries; conv_avx2.cpp, conv_avx512.cpp).
//
// Per sample n and group g, with K = C_in/G * KH * KW and P = OH * OW output positions:
//   forward          y_ng (C_out/G x P)  = w_g (C_out/G x K) @ col_ng (K x P)      (+ b, pre-filled)
//   backward_data    dcol (K x P)        = w_g^T @ dy_ng, then dx_ng += col2im(dcol)
//   backward_weight  dw_g (C_out/G x K) += dy_ng @ col_ng^T
// col_ng is never built whole: the P positions are cut into tiles of at most kColTileElems / K
// columns whose unfolded inputs sit in a per-thread workspace (or, for a 1x1, stride-1, unpadded
// convolution, are read from x in place through the GEMM's strides). The GEMM is the one of the
// active kernel table (gemm/gemm.hpp), so this file holds no per-ISA code of its own.
#pragma once

#include <algorithm>
#include <cstring>

#include "common/dispatch.hpp"
#include "common/simd.hpp"
#include "common/workspace.hpp"
#include "conv/conv_common.hpp"
#include "gemm/gemm.hpp"

namespace pydl {
namespace PYDL_ISA_NS {
namespace conv_detail {

// Unfolded-input tile: 32K elements (128 KB in float32) stays in L2 next to the GEMM's packing
// buffers; a tile is never narrower than kMinTileCols positions so GEMMs keep a useful width.
constexpr int64_t kColTileElems = int64_t{1} << 15;
constexpr int64_t kMinTileCols = 32;

inline void run_gemm(const GemmArgs<float>& g) { kernels().gemm.sgemm(g); }
inline void run_gemm(const GemmArgs<double>& g) { kernels().gemm.dgemm(g); }

struct Lowering {
  int64_t cig, cog, k, p, tile;
  bool in_place;  // 1x1, stride 1, no padding: x_ng is already col_ng
};

inline Lowering lowering(const ConvShape& s) {
  Lowering l;
  l.cig = s.c_in / s.groups;
  l.cog = s.c_out / s.groups;
  l.k = l.cig * s.kh * s.kw;
  l.p = s.oh * s.ow;
  l.in_place = s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.ph == 0 && s.pw == 0;
  int64_t t = kColTileElems / (l.k > 0 ? l.k : 1);
  // A multiple of 16 columns (the GEMM micro-kernels' panel width on AVX2 and AVX-512 float): 113
  // columns left a last panel of one column, computed at the cost of sixteen.
  t = t / 16 * 16;
  t = t < kMinTileCols ? kMinTileCols : t;
  l.tile = l.in_place || t > l.p ? l.p : t;
  return l;
}

inline int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

// dst[0, len) = src[0, len) and dst[0, len) = 0 for the short runs of im2col (an image row: 8
// values for an 8x8 input) in vector moves: std::copy / std::fill became a library call per run,
// about as long as the GEMM itself for 8x8 images.
template <typename T>
inline void copy_run(T* dst, const T* src, int64_t len) {
  using V = simd::Vec<T>;
  int64_t j = 0;
  for (; j + V::W <= len; j += V::W) simd::storeu(dst + j, simd::loadu(src + j));
  if (j < len) simd::store_partial(dst + j, simd::load_partial(src + j, len - j), len - j);
}

template <typename T>
inline void zero_run(T* dst, int64_t len) {
  using V = simd::Vec<T>;
  const V z = simd::zero<V>();
  int64_t j = 0;
  for (; j + V::W <= len; j += V::W) simd::storeu(dst + j, z);
  if (j < len) simd::store_partial(dst + j, z, len - j);
}

// copy_run / zero_run for a run whose destination positions up to d_end are all written after it
// (im2col fills a tile row by row in increasing order): the last, partial vector is stored whole
// when it ends by d_end and its source read ends by s_end (inside the channel's plane), its tail
// then overwritten. A masked store per short run cost more than the run's copy on Zen 3.
template <typename T>
inline void copy_run_ahead(T* dst, const T* src, int64_t len, const T* d_end, const T* s_end) {
  using V = simd::Vec<T>;
  int64_t j = 0;
  for (; j + V::W <= len; j += V::W) simd::storeu(dst + j, simd::loadu(src + j));
  if (j == len) return;
  if (dst + j + V::W <= d_end && src + j + V::W <= s_end) {
    simd::storeu(dst + j, simd::loadu(src + j));
  } else {
    simd::store_partial(dst + j, simd::load_partial(src + j, len - j), len - j);
  }
}

template <typename T>
inline void zero_run_ahead(T* dst, int64_t len, const T* d_end) {
  using V = simd::Vec<T>;
  if (len <= 0) return;
  const V z = simd::zero<V>();
  int64_t j = 0;
  for (; j + V::W <= len; j += V::W) simd::storeu(dst + j, z);
  if (j == len) return;
  if (dst + j + V::W <= d_end) {
    simd::storeu(dst + j, z);
  } else {
    simd::store_partial(dst + j, z, len - j);
  }
}

// x[0, len) += d[0, len) (col2im's runs) in vectors; the last, partial vector adds -0.0 past len
// (x + -0.0 is x, bit for bit, -0.0 and NaN included) when it ends by x_end, inside the channel's
// plane that only this call writes.
template <typename T>
inline void add_run(T* x, const T* d, int64_t len, const T* x_end) {
  using V = simd::Vec<T>;
  int64_t j = 0;
  for (; j + V::W <= len; j += V::W) simd::storeu(x + j, simd::loadu(x + j) + simd::loadu(d + j));
  if (j == len) return;
  if (x + j + V::W <= x_end) {
    simd::storeu(x + j, simd::loadu(x + j) + simd::load_partial(d + j, len - j, T(-0.0)));
  } else {
    for (; j < len; ++j) x[j] += d[j];
  }
}

// dst[j] = src[j * stride] for j < len; stride 2 (a strided convolution's usual one) with the
// stride known at compile time, which the compiler turns into vector loads and shuffles.
template <typename T>
inline void strided_run(T* __restrict dst, const T* __restrict src, int64_t len, int64_t stride) {
  if (stride == 2) {
    for (int64_t j = 0; j < len; ++j) dst[j] = src[2 * j];
  } else {
    for (int64_t j = 0; j < len; ++j) dst[j] = src[j * stride];
  }
}

// One row of the unfolded matrix over a tile of whole output rows [i0, i1): the rows whose input
// row ih = i * SH + base lies inside the input are [ia, ib) (kernel row kp).
struct WholeRows {
  int64_t i0, i1, base, ia, ib;
};

inline WholeRows whole_rows(const ConvShape& s, int64_t p0, int64_t tw, int64_t kp) {
  WholeRows w;
  w.i0 = p0 / s.ow;
  w.i1 = w.i0 + tw / s.ow;
  w.base = kp * s.dh - s.ph;
  w.ia = clamp64(w.base >= 0 ? 0 : (-w.base + s.sh - 1) / s.sh, w.i0, w.i1);
  w.ib = clamp64(s.h - 1 - w.base < 0 ? 0 : (s.h - 1 - w.base) / s.sh + 1, w.ia, w.i1);
  return w;
}

// whole_rows for every kernel row, computed once per tile for the first kCached rows.
constexpr int64_t kCached = 16;

struct WholeRowsCache {
  WholeRows rows[kCached];
  int64_t n = 0;
  WholeRowsCache(const ConvShape& s, int64_t p0, int64_t tw, bool whole) {
    if (!whole) return;
    n = s.kh < kCached ? s.kh : kCached;
    for (int64_t kp = 0; kp < n; ++kp) rows[kp] = whole_rows(s, p0, tw, kp);
  }
  WholeRows get(const ConvShape& s, int64_t p0, int64_t tw, int64_t kp) const {
    return kp < n ? rows[kp] : whole_rows(s, p0, tw, kp);
  }
};

// Per kernel column kq: iw = j * SW + off, and the output columns j whose iw lies inside the
// input, [jlo, jhi).
struct ColRange {
  int64_t off, jlo, jhi;
};

inline ColRange col_range(const ConvShape& s, int64_t kq) {
  ColRange c;
  c.off = kq * s.dw - s.pw;
  c.jlo = c.off >= 0 ? 0 : clamp64((-c.off + s.sw - 1) / s.sw, 0, s.ow);
  c.jhi = s.w - 1 - c.off < 0 ? 0 : clamp64((s.w - 1 - c.off) / s.sw + 1, 0, s.ow);
  return c;
}

// The unfolded rows r = (ci, kp, kq) in order, with the kernel-column ranges computed once per call
// for the first kCached columns (a row of a short sequence is 36 values: the integer divisions of
// its index arithmetic took longer than copying it). row(r, ci, kp, range) per row.
template <typename Row>
inline void for_unfolded_rows(const ConvShape& s, const Lowering& l, Row row) {
  ColRange cached[kCached];
  const int64_t nc = s.kw < kCached ? s.kw : kCached;
  for (int64_t kq = 0; kq < nc; ++kq) cached[kq] = col_range(s, kq);
  int64_t r = 0;
  for (int64_t ci = 0; ci < l.cig; ++ci)
    for (int64_t kp = 0; kp < s.kh; ++kp)
      for (int64_t kq = 0; kq < s.kw; ++kq, ++r)
        row(r, ci, kp, kq < nc ? cached[kq] : col_range(s, kq));
}

// A padded convolution over its whole output (every tile of a small image) unfolds a copy of the
// input with the padding written out as zeros, (C_in/G, H + 2 PH, W + 2 PW) in the per-thread
// kPadded workspace: no row or column is clipped there, so an 8x8 image's unfolded row is eight
// plain copies of 8 values instead of runs of 1, 6 and 1 values with zeros between (im2col and
// col2im took 21% of a small CNN's training step). padded_shape is the same convolution on it.
inline bool use_padded(const ConvShape& s, const Lowering& l, int64_t p0, int64_t p1) {
  return (s.ph != 0 || s.pw != 0) && p0 == 0 && p1 == l.p;
}

inline ConvShape padded_shape(const ConvShape& s) {
  ConvShape p = s;
  p.h = s.h + 2 * s.ph;
  p.w = s.w + 2 * s.pw;
  p.ph = 0;
  p.pw = 0;
  return p;
}

template <typename T>
T* padded_workspace(const ConvShape& s, const Lowering& l) {
  return static_cast<T*>(thread_workspace(WorkspaceSlot::kPadded,
                                          sizeof(T) * l.cig * (s.h + 2 * s.ph) * (s.w + 2 * s.pw)));
}

// A sequence (Conv1d) without padding (on either side: "same" with an even kernel pads the right
// only), stride 1, all of its outputs: unfolded row (ci, kq) is one run of x, x[ci, kq * DW + j]
// for j < OW, copied (or folded back) without the row-range logic.
inline bool unclipped_sequence(const ConvShape& s, int64_t tw) {
  return s.h == 1 && s.kh == 1 && s.pw == 0 && s.sw == 1 && tw == s.ow &&
         s.ow + (s.kw - 1) * s.dw <= s.w;
}

// col (K x (p1 - p0)) = the unfolded inputs of output positions [p0, p1) of one sample and group;
// xg: (C_in/G, H, W).
template <typename T>
void im2col(T* col, const T* xg, int64_t p0, int64_t p1, const ConvShape& s, const Lowering& l,
            int64_t ld = 0) {
  const int64_t tw = p1 - p0;
  if (ld == 0) ld = tw;  // row r of col starts at col + r * ld
  if (use_padded(s, l, p0, p1)) {
    const ConvShape sp = padded_shape(s);
    T* xp = padded_workspace<T>(s, l);
    for (int64_t ci = 0; ci < l.cig; ++ci) {
      T* dst = xp + ci * sp.h * sp.w;
      const T* src = xg + ci * s.h * s.w;
      zero_run(dst, s.ph * sp.w + s.pw);
      for (int64_t i = 0; i < s.h; ++i) {
        T* d = dst + (i + s.ph) * sp.w + s.pw;
        copy_run(d, src + i * s.w, s.w);
        zero_run(d + s.w, i + 1 < s.h ? 2 * s.pw : s.pw + s.ph * sp.w);
      }
    }
    im2col(col, xp, p0, p1, sp, l, ld);
    return;
  }
  if (unclipped_sequence(s, tw)) {
    const int64_t ow = s.ow, len = s.w;
    for (int64_t ci = 0, r = 0; ci < l.cig; ++ci)
      for (int64_t kq = 0; kq < s.kw; ++kq, ++r) copy_run(col + r * ld, xg + ci * len + kq * s.dw, ow);
    return;
  }
  // A tile of whole output rows (every tile of a small image) takes the row-wise path below.
  const bool whole = p0 % s.ow == 0 && tw % s.ow == 0;
  const WholeRowsCache rows(s, p0, tw, whole);
  for_unfolded_rows(s, l, [&](int64_t r, int64_t ci, int64_t kp, const ColRange& cr) {
    const T* xc = xg + ci * s.h * s.w;
    const int64_t off = cr.off, jlo = cr.jlo, jhi = cr.jhi;
    T* dst = col + r * ld;
    const T *d_end = dst + tw, *plane_end = xc + s.h * s.w;
    if (whole) {
      // Rows inside the input copy their columns [a, b) between zeros, the others are zero.
      // With nothing clipped and equal widths the rows are one contiguous block in x and col.
      const WholeRows w = rows.get(s, p0, tw, kp);
      const int64_t wa = jlo, wb = jhi > jlo ? jhi : jlo;
      zero_run(dst, (w.ia - w.i0) * s.ow);
      if (s.sw == 1 && s.sh == 1 && wa == 0 && wb == s.ow && s.w == s.ow) {
        copy_run(dst + (w.ia - w.i0) * s.ow, xc + (w.ia + w.base) * s.w + off,
                 (w.ib - w.ia) * s.ow);
      } else if (s.sw == 1 && wa == 0 && wb == s.ow && s.ow % simd::Vec<T>::W == 0) {
        // Unclipped rows a whole number of vectors wide (8x8 images, padded, in float32 on
        // AVX2): vector copies row after row, none of the per-row run logic.
        // (Sizes in locals: a vector store may alias anything, so s.* would be reloaded.)
        using V = simd::Vec<T>;
        const int64_t ow = s.ow, step = s.sh * s.w, rows = w.ib - w.ia;
        T* d = dst + (w.ia - w.i0) * ow;
        const T* xr = xc + (w.ia * s.sh + w.base) * s.w + off;
        for (int64_t i = 0; i < rows; ++i, d += ow, xr += step)
          for (int64_t j = 0; j < ow; j += V::W) simd::storeu(d + j, simd::loadu(xr + j));
      } else if (s.sw == 1 && wa == 0 && wb == s.ow) {
        // Unclipped rows of another width (6 values for a 3x3 kernel on 8x8 images).
        const int64_t ow = s.ow, step = s.sh * s.w, rows = w.ib - w.ia;
        T* d = dst + (w.ia - w.i0) * ow;
        const T* xr = xc + (w.ia * s.sh + w.base) * s.w + off;
        for (int64_t i = 0; i < rows; ++i, d += ow, xr += step)
          copy_run_ahead(d, xr, ow, d_end, plane_end);
      } else {
        for (int64_t i = w.ia; i < w.ib; ++i) {
          T* d = dst + (i - w.i0) * s.ow;
          const T* xr = xc + (i * s.sh + w.base) * s.w + off;
          zero_run_ahead(d, wa, d_end);
          if (s.sw == 1) {
            copy_run_ahead(d + wa, xr + wa, wb - wa, d_end, plane_end);
          } else {
            strided_run(d + wa, xr + wa * s.sw, wb - wa, s.sw);
          }
          zero_run_ahead(d + wb, s.ow - wb, d_end);
        }
      }
      zero_run(dst + (w.ib - w.i0) * s.ow, (w.i1 - w.ib) * s.ow);
      return;
    }
    // Output rows i of [p0, p1): columns [j0, j1) of each (j0 = 0 after the first row).
    int64_t i = p0 / s.ow, j0 = p0 % s.ow;
    for (int64_t q = p0; q < p1; ++i, j0 = 0) {
      const int64_t j1 = s.ow < j0 + (p1 - q) ? s.ow : j0 + (p1 - q);
      T* d = dst + (q - p0) - j0;  // d[j] is output column j of row i
      const int64_t ih = i * s.sh - s.ph + kp * s.dh;
      if (ih < 0 || ih >= s.h) {
        zero_run_ahead(d + j0, j1 - j0, d_end);
      } else {
        const T* xr = xc + ih * s.w + off;
        const int64_t a = clamp64(jlo, j0, j1), b = clamp64(jhi, a, j1);
        zero_run_ahead(d + j0, a - j0, d_end);
        if (s.sw == 1) {
          copy_run_ahead(d + a, xr + a, b - a, d_end, plane_end);
        } else {
          strided_run(d + a, xr + a * s.sw, b - a, s.sw);
        }
        zero_run_ahead(d + b, j1 - b, d_end);
      }
      q += j1 - j0;
    }
  });
}

// dxg (C_in/G, H, W) += col2im(dcol) for output positions [p0, p1): the transpose of im2col.
template <typename T>
void col2im_add(T* dxg, const T* dcol, int64_t p0, int64_t p1, const ConvShape& s,
                const Lowering& l, int64_t ld = 0) {
  const int64_t tw = p1 - p0;
  if (ld == 0) ld = tw;
  if (use_padded(s, l, p0, p1)) {
    // Fold into a zeroed padded image (each element's terms in the same order), then add its
    // inside to dxg.
    const ConvShape sp = padded_shape(s);
    T* dp = padded_workspace<T>(s, l);
    zero_run(dp, l.cig * sp.h * sp.w);
    col2im_add(dp, dcol, p0, p1, sp, l, ld);
    for (int64_t ci = 0; ci < l.cig; ++ci)
      for (int64_t i = 0; i < s.h; ++i) {
        T* __restrict d = dxg + (ci * s.h + i) * s.w;
        const T* src = dp + (ci * sp.h + i + s.ph) * sp.w + s.pw;
        for (int64_t j = 0; j < s.w; ++j) d[j] += src[j];
      }
    return;
  }
  if (unclipped_sequence(s, tw)) {
    const int64_t ow = s.ow, len = s.w;
    for (int64_t ci = 0, r = 0; ci < l.cig; ++ci)
      for (int64_t kq = 0; kq < s.kw; ++kq, ++r) {
        T* __restrict d = dxg + ci * len + kq * s.dw;
        const T* src = dcol + r * ld;
        for (int64_t j = 0; j < ow; ++j) d[j] += src[j];
      }
    return;
  }
  const bool whole = p0 % s.ow == 0 && tw % s.ow == 0;
  const WholeRowsCache rows(s, p0, tw, whole);
  for_unfolded_rows(s, l, [&](int64_t r, int64_t ci, int64_t kp, const ColRange& cr) {
    T* xc = dxg + ci * s.h * s.w;
    const T* plane_end = xc + s.h * s.w;
    const int64_t off = cr.off, jlo = cr.jlo, jhi = cr.jhi;
    const T* src = dcol + r * ld;
    if (whole) {
      // im2col's row-wise path, adding instead of copying (each dx element gets at most one
      // term per r, so the order of its sum is unchanged).
      const WholeRows w = rows.get(s, p0, tw, kp);
      const int64_t wa = jlo, wb = jhi > jlo ? jhi : jlo;
      if (s.sw == 1 && wa == 0 && wb == s.ow && s.ow % simd::Vec<T>::W == 0) {
        // Unclipped rows a whole number of vectors wide: im2col's vector rows, adding.
        using V = simd::Vec<T>;
        const int64_t ow = s.ow, step = s.sh * s.w, n_rows = w.ib - w.ia;
        const T* d = src + (w.ia - w.i0) * ow;
        T* xr = xc + (w.ia * s.sh + w.base) * s.w + off;
        for (int64_t i = 0; i < n_rows; ++i, d += ow, xr += step)
          for (int64_t j = 0; j < ow; j += V::W)
            simd::storeu(xr + j, simd::loadu(xr + j) + simd::loadu(d + j));
        return;
      }
      if (s.sw == 1 && wa == 0 && wb == s.ow) {
        // Unclipped rows of another width: the same walk with sizes in locals.
        const int64_t ow = s.ow, step = s.sh * s.w, n_rows = w.ib - w.ia;
        const T* d = src + (w.ia - w.i0) * ow;
        T* xr = xc + (w.ia * s.sh + w.base) * s.w + off;
        for (int64_t i = 0; i < n_rows; ++i, d += ow, xr += step) add_run(xr, d, ow, plane_end);
        return;
      }
      for (int64_t i = w.ia; i < w.ib; ++i) {
        const T* d = src + (i - w.i0) * s.ow;
        T* __restrict xr = xc + (i * s.sh + w.base) * s.w + off;
        if (s.sw == 1) {
          add_run(xr + wa, d + wa, wb - wa, plane_end);
        } else {
          for (int64_t j = wa; j < wb; ++j) xr[j * s.sw] += d[j];
        }
      }
      return;
    }
    int64_t i = p0 / s.ow, j0 = p0 % s.ow;
    for (int64_t q = p0; q < p1; ++i, j0 = 0) {
      const int64_t j1 = s.ow < j0 + (p1 - q) ? s.ow : j0 + (p1 - q);
      const T* d = src + (q - p0) - j0;
      const int64_t ih = i * s.sh - s.ph + kp * s.dh;
      if (ih >= 0 && ih < s.h) {
        T* __restrict xr = xc + ih * s.w + off;
        const int64_t a = clamp64(jlo, j0, j1), b = clamp64(jhi, a, j1);
        if (s.sw == 1) {
          add_run(xr + a, d + a, b - a, plane_end);
        } else {
          for (int64_t j = a; j < b; ++j) xr[j * s.sw] += d[j];
        }
      }
      q += j1 - j0;
    }
  });
}

// Small outputs (8x8 images, short sequences): one GEMM per sample would have only P columns,
// so the forward and the data gradient put the columns of several samples side by side, up to
// kBatchCols columns, with the unfolded inputs and the product in the per-thread workspace (at most
// kBatchElems elements for both). Each output element still sums the same products in the same
// order (a GEMM's result for a column does not depend on how many columns it computes), so the
// bits are those of the per-sample GEMMs. 1 when batching does not apply.
constexpr int64_t kBatchCols = 512;
constexpr int64_t kBatchElems = int64_t{1} << 16;

inline int64_t samples_per_gemm(const ConvShape& s, const Lowering& l, int64_t rows) {
  if (l.in_place || s.groups != 1 || l.tile != l.p || 2 * l.p > kBatchCols) return 1;
  int64_t b = kBatchCols / l.p;
  const int64_t cap = kBatchElems / ((l.k + rows) * l.p);
  b = b < cap ? b : cap;
  b = b < s.n ? b : s.n;
  return b < 1 ? 1 : b;
}

// The per-thread workspace of a batched GEMM over `cols` columns: K x cols unfolded (or unfolded
// gradient) columns, followed by C_out x cols for the outputs or the gathered output gradients.
template <typename T>
T* batched_workspace(const ConvShape& s, const Lowering& l, int64_t cols) {
  return static_cast<T*>(
      thread_workspace(WorkspaceSlot::kScratch, sizeof(T) * (l.k + s.c_out) * cols));
}

// [col_n0 ... col_n0+ns-1] (K x ns*P) side by side in the batched workspace; returns it.
template <typename T>
T* unfold_samples(const T* x, const ConvShape& s, const Lowering& l, int64_t n0, int64_t ns) {
  const int64_t cols = ns * l.p;
  T* col = batched_workspace<T>(s, l, cols);
  for (int64_t i = 0; i < ns; ++i)
    im2col(col + i * l.p, x + (n0 + i) * s.c_in * s.h * s.w, 0, l.p, s, l, cols);
  return col;
}

// y for samples [n0, n0 + ns) in one GEMM: out (C_out x ns*P) = w @ [col_n0 ... col_n0+ns-1] (+ b
// first), then each sample's block copied to y.
template <typename T>
void batched_forward(T* y, const T* x, const T* w, const T* b, const ConvShape& s,
                     const Lowering& l, int64_t n0, int64_t ns) {
  const int64_t cols = ns * l.p;
  T* col = unfold_samples(x, s, l, n0, ns);
  T* out = col + l.k * cols;
  if (b) {
    for (int64_t co = 0; co < s.c_out; ++co) std::fill(out + co * cols, out + (co + 1) * cols, b[co]);
  }
  GemmArgs<T> a;
  a.m = s.c_out;
  a.n = cols;
  a.k = l.k;
  a.a = w;
  a.rs_a = l.k;
  a.cs_a = 1;
  a.b = col;
  a.rs_b = cols;
  a.cs_b = 1;
  a.c = out;
  a.ldc = cols;
  a.accumulate = b != nullptr;
  run_gemm(a);
  for (int64_t i = 0; i < ns; ++i)
    for (int64_t co = 0; co < s.c_out; ++co)
      copy_run(y + ((n0 + i) * s.c_out + co) * l.p, out + co * cols + i * l.p, l.p);
}

// dys (C_out x ns*P) = [dy_n0 ... dy_n0+ns-1]: the output gradients of samples [n0, n0 + ns) side
// by side, as the batched GEMMs read them.
template <typename T>
void gather_dy(T* dys, const T* dy, const ConvShape& s, const Lowering& l, int64_t n0, int64_t ns) {
  const int64_t cols = ns * l.p;
  for (int64_t i = 0; i < ns; ++i)
    for (int64_t co = 0; co < s.c_out; ++co) {
      const T* src = dy + ((n0 + i) * s.c_out + co) * l.p;
      copy_run(dys + co * cols + i * l.p, src, l.p);
    }
}

// dx for samples [n0, n0 + ns) in one GEMM: dcol (K x ns*P) = w^T @ [dy_n0 ... ] (dy gathered into
// the workspace), then each sample's columns folded back by col2im.
template <typename T>
void batched_backward_data(T* dx, const T* dy, const T* w, const ConvShape& s, const Lowering& l,
                           int64_t n0, int64_t ns) {
  const int64_t cols = ns * l.p;
  T* dcol = batched_workspace<T>(s, l, cols);
  T* dys = dcol + l.k * cols;
  gather_dy(dys, dy, s, l, n0, ns);
  GemmArgs<T> a;
  a.m = l.k;
  a.n = cols;
  a.k = s.c_out;
  a.a = w;  // element (r, co) of w^T at w[co * K + r]
  a.rs_a = 1;
  a.cs_a = l.k;
  a.b = dys;
  a.rs_b = cols;
  a.cs_b = 1;
  a.c = dcol;
  a.ldc = cols;
  run_gemm(a);
  for (int64_t i = 0; i < ns; ++i) {
    T* dxn = dx + (n0 + i) * s.c_in * s.h * s.w;
    std::memset(dxn, 0, sizeof(T) * s.c_in * s.h * s.w);
    col2im_add(dxn, dcol + i * l.p, 0, l.p, s, l, cols);
  }
}

// y (N, C_out, OH, OW) = conv(x (N, C_in, H, W), w (C_out, C_in/G, KH, KW)) + b
template <typename T>
void gemm_forward(T* y, const T* x, const T* w, const T* b, const ConvShape& s) {
  const Lowering l = lowering(s);
  const int64_t per = samples_per_gemm(s, l, s.c_out);
  if (per > 1) {
    parallel_for((s.n + per - 1) / per, [&](int64_t t) {
      const int64_t n0 = t * per;
      batched_forward(y, x, w, b, s, l, n0, s.n - n0 < per ? s.n - n0 : per);
    });
    return;
  }
  parallel_for(s.n, [&](int64_t n) {
    T* col = l.in_place ? nullptr
                        : static_cast<T*>(thread_workspace(WorkspaceSlot::kScratch,
                                                           sizeof(T) * l.k * l.tile));
    for (int64_t g = 0; g < s.groups; ++g) {
      const T* xg = x + (n * s.c_in + g * l.cig) * s.h * s.w;
      T* yg = y + (n * s.c_out + g * l.cog) * l.p;
      if (b) {
        for (int64_t co = 0; co < l.cog; ++co)
          for (int64_t q = 0; q < l.p; ++q) yg[co * l.p + q] = b[g * l.cog + co];
      }
      for (int64_t p0 = 0; p0 < l.p; p0 += l.tile) {
        const int64_t p1 = p0 + l.tile < l.p ? p0 + l.tile : l.p;
        GemmArgs<T> a;
        a.m = l.cog;
        a.n = p1 - p0;
        a.k = l.k;
        a.a = w + g * l.cog * l.k;
        a.rs_a = l.k;
        a.cs_a = 1;
        if (l.in_place) {
          a.b = xg + p0;
          a.rs_b = s.h * s.w;
        } else {
          im2col(col, xg, p0, p1, s, l);
          a.b = col;
          a.rs_b = p1 - p0;
        }
        a.cs_b = 1;
        a.c = yg + p0;
        a.ldc = l.p;
        a.accumulate = b != nullptr;
        run_gemm(a);
      }
    }
  });
}

// dx (N, C_in, H, W) from dy (N, C_out, OH, OW) and w
template <typename T>
void gemm_backward_data(T* dx, const T* dy, const T* w, const ConvShape& s) {
  const Lowering l = lowering(s);
  const int64_t per = samples_per_gemm(s, l, s.c_out);
  if (per > 1) {
    parallel_for((s.n + per - 1) / per, [&](int64_t t) {
      const int64_t n0 = t * per;
      batched_backward_data(dx, dy, w, s, l, n0, s.n - n0 < per ? s.n - n0 : per);
    });
    return;
  }
  parallel_for(s.n, [&](int64_t n) {
    T* dcol = l.in_place ? nullptr
                         : static_cast<T*>(thread_workspace(WorkspaceSlot::kScratch,
                                                            sizeof(T) * l.k * l.tile));
    T* dxn = dx + n * s.c_in * s.h * s.w;
    if (!l.in_place) std::memset(dxn, 0, sizeof(T) * s.c_in * s.h * s.w);
    for (int64_t g = 0; g < s.groups; ++g) {
      T* dxg = dxn + g * l.cig * s.h * s.w;
      for (int64_t p0 = 0; p0 < l.p; p0 += l.tile) {
        const int64_t p1 = p0 + l.tile < l.p ? p0 + l.tile : l.p;
        GemmArgs<T> a;
        a.m = l.k;
        a.n = p1 - p0;
        a.k = l.cog;
        a.a = w + g * l.cog * l.k;  // element (r, co) of w_g^T at w_g[co * K + r]
        a.rs_a = 1;
        a.cs_a = l.k;
        a.b = dy + (n * s.c_out + g * l.cog) * l.p + p0;
        a.rs_b = l.p;
        a.cs_b = 1;
        a.c = l.in_place ? dxg + p0 : dcol;
        a.ldc = l.in_place ? s.h * s.w : p1 - p0;
        run_gemm(a);
        if (!l.in_place) col2im_add(dxg, dcol, p0, p1, s, l);
      }
    }
  });
}

// out (C_out x K) (+)= the weight gradient of samples [n0, n0 + ns) in one GEMM: [dy_n0 ... ] (C_out x
// ns*P) @ [col_n0 ... ]^T, so the GEMM's inner dimension is ns*P instead of P (a short sequence's
// 36 positions kept the micro-kernel's accumulators busy for 36 steps per load and store of C).
template <typename T>
void batched_backward_weight(T* out, const T* dy, const T* x, const ConvShape& s,
                             const Lowering& l, int64_t n0, int64_t ns, bool accumulate) {
  const int64_t cols = ns * l.p;
  T* col = unfold_samples(x, s, l, n0, ns);
  T* dys = col + l.k * cols;
  gather_dy(dys, dy, s, l, n0, ns);
  GemmArgs<T> a;
  a.m = s.c_out;
  a.n = l.k;
  a.k = cols;
  a.a = dys;
  a.rs_a = cols;
  a.cs_a = 1;
  a.b = col;  // element (q, r) of col^T at col[r * cols + q]
  a.rs_b = 1;
  a.cs_b = cols;
  a.c = out;
  a.ldc = l.k;
  a.accumulate = accumulate;
  run_gemm(a);
}

// dw (C_out, C_in/G, KH, KW) and db (C_out,) from dy and x
template <typename T>
void gemm_backward_weight(T* dw, T* db, const T* dy, const T* x, const ConvShape& s) {
  const Lowering l = lowering(s);
  const int64_t per = samples_per_gemm(s, l, s.c_out);
  if (dw) blocked_sample_sum(dw, s.c_out * l.k, s.n, [&](int64_t n0, int64_t n1, T* out) {
    if (n0 == n1) std::memset(out, 0, sizeof(T) * s.c_out * l.k);
    if (per > 1) {
      // ceil((n1 - n0) / per) GEMMs over equal shares of the block's samples
      const int64_t nb = n1 - n0, gemms = (nb + per - 1) / per;
      for (int64_t i = 0; i < gemms; ++i) {
        const int64_t a = n0 + nb * i / gemms, b = n0 + nb * (i + 1) / gemms;
        batched_backward_weight(out, dy, x, s, l, a, b - a, i > 0);
      }
      return;
    }
    T* col = l.in_place ? nullptr
                        : static_cast<T*>(thread_workspace(WorkspaceSlot::kScratch,
                                                           sizeof(T) * l.k * l.tile));
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t g = 0; g < s.groups; ++g) {
        const T* xg = x + (n * s.c_in + g * l.cig) * s.h * s.w;
        for (int64_t p0 = 0; p0 < l.p; p0 += l.tile) {
          const int64_t p1 = p0 + l.tile < l.p ? p0 + l.tile : l.p;
          GemmArgs<T> a;
          a.m = l.cog;
          a.n = l.k;
          a.k = p1 - p0;
          a.a = dy + (n * s.c_out + g * l.cog) * l.p + p0;
          a.rs_a = l.p;
          a.cs_a = 1;
          if (l.in_place) {
            a.b = xg + p0;  // element (q, r) of col^T at x_g[r * H * W + q]
            a.cs_b = s.h * s.w;
          } else {
            im2col(col, xg, p0, p1, s, l);
            a.b = col;
            a.cs_b = p1 - p0;
          }
          a.rs_b = 1;
          a.c = out + g * l.cog * l.k;
          a.ldc = l.k;
          a.accumulate = n > n0 || p0 > 0;
          run_gemm(a);
        }
      }
    }
  }, per > 1 ? (per + 1) / 2 : 1);
  if (db) bias_grad(db, dy, s);
}

template <typename T>
void fill_gemm_fns(ConvFns<T>& f) {
  f.forward = &gemm_forward<T>;
  f.backward_data = &gemm_backward_data<T>;
  f.backward_weight = &gemm_backward_weight<T>;
}

}  // namespace conv_detail

inline void fill_conv_table(ConvTable& t) {
  conv_detail::fill_gemm_fns(t.f32);
  conv_detail::fill_gemm_fns(t.f64);
}

}  // namespace PYDL_ISA_NS
}  // namespace pydl
