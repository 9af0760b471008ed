// The pooling kernels, written once as plain loops and compiled into the generic, AVX2 and AVX-512
// translation units (pool_ref.cpp, pool_avx2.cpp, pool_avx512.cpp). Formulas: pool/pool.hpp.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "pool/pool.hpp"

namespace pydl {
namespace PYDL_ISA_NS {
namespace pool_detail {

// Runs plane(p) for every plane, a few hundred outputs' worth of planes per task.
template <typename F>
void for_planes(const PoolShape& s, F plane) {
  const int64_t per_plane = s.h * s.w + s.oh * s.ow;
  const int64_t grain = per_plane >= 4096 ? 1 : 4096 / (per_plane > 0 ? per_plane : 1);
  parallel_chunks(s.planes, grain, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) plane(p);
  }, 1);
}

inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Outputs [ja, jb) of one output row whose windows lie inside the plane's columns, window rows
// [ha, hb): each output scans its window in max_forward's order (row by row, the first maximum or
// the first NaN wins) with selects instead of branches, so the outputs are independent lanes that
// the compiler vectorises (the branchy scalar scan mispredicted on about every other element of
// random data: 24 ns per 2x2 output). off[q] holds the winner's offset ih * W + c from the window's
// first column; planes of 2^31 elements or more take the scalar path. kSW: the column stride when
// known at compile time (strides 1 and 2 become vector loads and shuffles instead of element
// loads), 0 to read it from s.
template <typename T, int kSW>
void max_row_inside(T* yr, int64_t* ir, const T* xp, const PoolShape& s, int64_t ha, int64_t hb,
                    int64_t ja, int64_t jb) {
  constexpr int64_t kChunk = 64;
  const int64_t sw = kSW > 0 ? kSW : s.sw;
  T m[kChunk];
  int32_t off[kChunk];
  for (int64_t j0 = ja; j0 < jb; j0 += kChunk) {
    const int64_t n = min64(kChunk, jb - j0);
    const int64_t col0 = j0 * sw - s.pw;  // first column of output j0's window
    const T* first = xp + ha * s.w + col0;
    for (int64_t q = 0; q < n; ++q) {
      m[q] = first[q * sw];
      off[q] = static_cast<int32_t>(ha * s.w);
    }
    for (int64_t ih = ha; ih < hb; ++ih) {
      for (int64_t c = ih == ha ? 1 : 0; c < s.kw; ++c) {
        const T* row = xp + ih * s.w + col0 + c;
        const int32_t here = static_cast<int32_t>(ih * s.w + c);
        for (int64_t q = 0; q < n; ++q) {
          const T v = row[q * sw];
          const bool take = (v > m[q]) | ((v != v) & (m[q] == m[q]));
          m[q] = take ? v : m[q];
          off[q] = take ? here : off[q];
        }
      }
    }
    for (int64_t q = 0; q < n; ++q) {
      yr[j0 + q] = m[q];
      ir[j0 + q] = off[q] + col0 + q * sw;
    }
  }
}

// Narrow outputs (an 8x8 image pooled 2x2 has rows of 4 outputs): the outputs (i, j) of rows
// [i0, i1), columns [ja, jb), whose windows all lie inside the plane, flattened into lanes that
// read their window through an offset per lane (base[q]: the window's first element), with the
// same selects as max_row_inside.
template <typename T>
void max_block_inside(T* yp, int64_t* ip, const T* xp, const PoolShape& s, int64_t i0, int64_t i1,
                      int64_t ja, int64_t jb) {
  constexpr int64_t kChunk = 64;
  T m[kChunk];
  int32_t base[kChunk], off[kChunk];
  int64_t pos[kChunk];
  const int64_t cols = jb - ja, total = (i1 - i0) * cols;
  for (int64_t t0 = 0; t0 < total; t0 += kChunk) {
    const int64_t n = min64(kChunk, total - t0);
    int64_t i = i0 + t0 / cols, j = ja + t0 % cols;
    for (int64_t q = 0; q < n; ++q) {
      pos[q] = i * s.ow + j;
      base[q] = static_cast<int32_t>((i * s.sh - s.ph) * s.w + j * s.sw - s.pw);
      m[q] = xp[base[q]];
      off[q] = 0;
      if (++j == jb) {
        j = ja;
        ++i;
      }
    }
    for (int64_t r = 0; r < s.kh; ++r) {
      for (int64_t c = r == 0 ? 1 : 0; c < s.kw; ++c) {
        const int32_t here = static_cast<int32_t>(r * s.w + c);
        for (int64_t q = 0; q < n; ++q) {
          const T v = xp[base[q] + here];
          const bool take = (v > m[q]) | ((v != v) & (m[q] == m[q]));
          m[q] = take ? v : m[q];
          off[q] = take ? here : off[q];
        }
      }
    }
    for (int64_t q = 0; q < n; ++q) {
      yp[pos[q]] = m[q];
      ip[pos[q]] = base[q] + off[q];
    }
  }
}

// y, idx (P, OH, OW); x (P, H, W)
template <typename T>
void max_forward(T* y, int64_t* idx, const T* x, const PoolShape& s) {
  // Output columns whose windows lie inside [0, W): [ja, jb).
  const int64_t ja = min64((s.pw + s.sw - 1) / s.sw, s.ow);
  const int64_t jb = s.w - s.kw + s.pw < 0 ? ja : max64(ja, min64((s.w - s.kw + s.pw) / s.sw + 1, s.ow));
  const bool lanes = s.h * s.w < (int64_t{1} << 31);
  // Output rows whose windows lie inside [0, H): [ia, ib). Narrow rows take max_block_inside.
  const int64_t ia = min64((s.ph + s.sh - 1) / s.sh, s.oh);
  const int64_t ib = s.h - s.kh + s.ph < 0 ? ia : max64(ia, min64((s.h - s.kh + s.ph) / s.sh + 1, s.oh));
  const bool narrow = lanes && jb - ja < 16 && ja < jb && ia < ib;
  for_planes(s, [&](int64_t p) {
    const T* xp = x + p * s.h * s.w;
    if (narrow) max_block_inside(y + p * s.oh * s.ow, idx + p * s.oh * s.ow, xp, s, ia, ib, ja, jb);
    for (int64_t i = 0; i < s.oh; ++i) {
      const int64_t h0 = i * s.sh - s.ph;
      const int64_t ha = max64(h0, 0), hb = min64(h0 + s.kh, s.h);
      T* yr = y + (p * s.oh + i) * s.ow;
      int64_t* ir = idx + (p * s.oh + i) * s.ow;
      const bool done = narrow && i >= ia && i < ib;  // columns [ja, jb) written by the block
      if (lanes && ja < jb && !narrow) {
        if (s.sw == 1) {
          max_row_inside<T, 1>(yr, ir, xp, s, ha, hb, ja, jb);
        } else if (s.sw == 2) {
          max_row_inside<T, 2>(yr, ir, xp, s, ha, hb, ja, jb);
        } else {
          max_row_inside<T, 0>(yr, ir, xp, s, ha, hb, ja, jb);
        }
      }
      const bool skip = lanes && ja < jb && (!narrow || done);
      for (int64_t j = 0; j < s.ow; ++j) {
        if (skip && j == ja) j = jb;
        if (j >= s.ow) break;
        const int64_t w0 = j * s.sw - s.pw;
        const int64_t wa = max64(w0, 0), wb = min64(w0 + s.kw, s.w);
        int64_t best = ha * s.w + wa;
        T m = xp[best];
        for (int64_t ih = ha; ih < hb; ++ih) {
          for (int64_t iw = wa; iw < wb; ++iw) {
            const T v = xp[ih * s.w + iw];
            if (v > m || (v != v && m == m)) {
              m = v;
              best = ih * s.w + iw;
            }
          }
        }
        yr[j] = m;
        ir[j] = best;
      }
    }
  });
}

// dx (P, H, W); dy, idx (P, OH, OW)
template <typename T>
void max_backward(T* dx, const T* dy, const int64_t* idx, const PoolShape& s) {
  for_planes(s, [&](int64_t p) {
    T* dxp = dx + p * s.h * s.w;
    std::memset(dxp, 0, sizeof(T) * s.h * s.w);
    const int64_t o = p * s.oh * s.ow;
    for (int64_t q = 0; q < s.oh * s.ow; ++q) dxp[idx[o + q]] += dy[o + q];
  });
}

// y (P, OH, OW); x (P, H, W)
template <typename T>
void avg_forward(T* y, const T* x, const PoolShape& s) {
  const T scale = T(1) / T(s.kh * s.kw);
  for_planes(s, [&](int64_t p) {
    const T* xp = x + p * s.h * s.w;
    for (int64_t i = 0; i < s.oh; ++i) {
      const int64_t h0 = i * s.sh - s.ph;
      const int64_t ha = max64(h0, 0), hb = min64(h0 + s.kh, s.h);
      for (int64_t j = 0; j < s.ow; ++j) {
        const int64_t w0 = j * s.sw - s.pw;
        const int64_t wa = max64(w0, 0), wb = min64(w0 + s.kw, s.w);
        T acc = T(0);
        for (int64_t ih = ha; ih < hb; ++ih)
          for (int64_t iw = wa; iw < wb; ++iw) acc += xp[ih * s.w + iw];
        y[(p * s.oh + i) * s.ow + j] = acc * scale;
      }
    }
  });
}

// dx (P, H, W); dy (P, OH, OW)
template <typename T>
void avg_backward(T* dx, const T* dy, const PoolShape& s) {
  const T scale = T(1) / T(s.kh * s.kw);
  for_planes(s, [&](int64_t p) {
    T* dxp = dx + p * s.h * s.w;
    std::memset(dxp, 0, sizeof(T) * s.h * s.w);
    for (int64_t i = 0; i < s.oh; ++i) {
      const int64_t h0 = i * s.sh - s.ph;
      const int64_t ha = max64(h0, 0), hb = min64(h0 + s.kh, s.h);
      for (int64_t j = 0; j < s.ow; ++j) {
        const int64_t w0 = j * s.sw - s.pw;
        const int64_t wa = max64(w0, 0), wb = min64(w0 + s.kw, s.w);
        const T g = dy[(p * s.oh + i) * s.ow + j] * scale;
        for (int64_t ih = ha; ih < hb; ++ih)
          for (int64_t iw = wa; iw < wb; ++iw) dxp[ih * s.w + iw] += g;
      }
    }
  });
}

// Adaptive window of output cell i along an axis of n inputs and o outputs: [start, end).
inline int64_t ada_start(int64_t i, int64_t n, int64_t o) { return i * n / o; }
inline int64_t ada_end(int64_t i, int64_t n, int64_t o) { return ((i + 1) * n + o - 1) / o; }

// y (P, OH, OW); x (P, H, W)
template <typename T>
void adaptive_avg_forward(T* y, const T* x, const PoolShape& s) {
  for_planes(s, [&](int64_t p) {
    const T* xp = x + p * s.h * s.w;
    for (int64_t i = 0; i < s.oh; ++i) {
      const int64_t ha = ada_start(i, s.h, s.oh), hb = ada_end(i, s.h, s.oh);
      for (int64_t j = 0; j < s.ow; ++j) {
        const int64_t wa = ada_start(j, s.w, s.ow), wb = ada_end(j, s.w, s.ow);
        T acc = T(0);
        for (int64_t ih = ha; ih < hb; ++ih)
          for (int64_t iw = wa; iw < wb; ++iw) acc += xp[ih * s.w + iw];
        y[(p * s.oh + i) * s.ow + j] = acc / T((hb - ha) * (wb - wa));
      }
    }
  });
}

// dx (P, H, W); dy (P, OH, OW)
template <typename T>
void adaptive_avg_backward(T* dx, const T* dy, const PoolShape& s) {
  for_planes(s, [&](int64_t p) {
    T* dxp = dx + p * s.h * s.w;
    std::memset(dxp, 0, sizeof(T) * s.h * s.w);
    for (int64_t i = 0; i < s.oh; ++i) {
      const int64_t ha = ada_start(i, s.h, s.oh), hb = ada_end(i, s.h, s.oh);
      for (int64_t j = 0; j < s.ow; ++j) {
        const int64_t wa = ada_start(j, s.w, s.ow), wb = ada_end(j, s.w, s.ow);
        const T g = dy[(p * s.oh + i) * s.ow + j] / T((hb - ha) * (wb - wa));
        for (int64_t ih = ha; ih < hb; ++ih)
          for (int64_t iw = wa; iw < wb; ++iw) dxp[ih * s.w + iw] += g;
      }
    }
  });
}

template <typename T>
void fill_fns(PoolFns<T>& f) {
  f.max_forward = &max_forward<T>;
  f.max_backward = &max_backward<T>;
  f.avg_forward = &avg_forward<T>;
  f.avg_backward = &avg_backward<T>;
  f.adaptive_avg_forward = &adaptive_avg_forward<T>;
  f.adaptive_avg_backward = &adaptive_avg_backward<T>;
}

}  // namespace pool_detail

inline void fill_pool_table(PoolTable& t) {
  pool_detail::fill_fns(t.f32);
  pool_detail::fill_fns(t.f64);
}

}  // namespace PYDL_ISA_NS
}  // namespace pydl
