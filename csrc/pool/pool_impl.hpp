// The pooling kernels, written once as plain loops and compiled into the generic, AVX2 and AVX-512
// translation units (pool_ref.cpp, pool_avx2.cpp, pool_avx512.cpp). Formulas: pool/pool.hpp.
#pragma once

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

// y, idx (P, OH, OW); x (P, H, W)
template <typename T>
void max_forward(T* y, int64_t* idx, const T* x, const PoolShape& s) {
  for_planes(s, [&](int64_t p) {
    const T* xp = x + p * s.h * s.w;
    for (int64_t i = 0; i < s.oh; ++i) {
      const int64_t h0 = i * s.sh - s.ph;
      const int64_t ha = max64(h0, 0), hb = min64(h0 + s.kh, s.h);
      for (int64_t j = 0; j < s.ow; ++j) {
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
        y[(p * s.oh + i) * s.ow + j] = m;
        idx[(p * s.oh + i) * s.ow + j] = best;
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
