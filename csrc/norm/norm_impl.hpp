// The normalisation kernels, written once as plain loops and compiled into the generic, AVX2 and
// AVX-512 translation units (norm_ref.cpp, norm_avx2.cpp, norm_avx512.cpp). Formulas:
// norm/norm.hpp.
#pragma once

#include <cmath>
#include <vector>

#include "common/isa.hpp"
#include "common/lanes.hpp"
#include "common/parallel.hpp"
#include "norm/norm.hpp"

namespace pydl {
namespace PYDL_ISA_NS {
namespace norm_detail {

// Rows per layer-norm block: the dw/db partials are per block, so this fixes the summation order.
constexpr int64_t kRowsPerBlock = 32;

// Calls f(base) for the N contiguous runs of S values of channel ch (base = offset of the run).
template <typename F>
inline void for_runs(int64_t n, int64_t c, int64_t s, int64_t ch, F f) {
  for (int64_t i = 0; i < n; ++i) f((i * c + ch) * s);
}

template <typename T>
void batch_norm_forward(T* y, T* mean, T* invstd, T* running_mean, T* running_var, const T* x,
                        const T* w, const T* b, int64_t n, int64_t c, int64_t s, double eps,
                        double momentum, bool training) {
  const int64_t count = n * s;
  parallel_chunks(c, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t ch = c0; ch < c1; ++ch) {
      double mu, is;
      if (training) {
        double sum[kSumLanes] = {}, sq[kSumLanes] = {};
        for_runs(n, c, s, ch, [&](int64_t o) {
          for_lanes(s, [&](int64_t k, int l) { sum[l] += double(x[o + k]); });
        });
        mu = lane_total(sum) / double(count);
        for_runs(n, c, s, ch, [&](int64_t o) {
          for_lanes(s, [&](int64_t k, int l) {
            const double dv = double(x[o + k]) - mu;
            sq[l] += dv * dv;
          });
        });
        const double ss = lane_total(sq);
        const double var = ss / double(count);
        is = 1.0 / std::sqrt(var + eps);
        if (running_mean)
          running_mean[ch] = T((1.0 - momentum) * double(running_mean[ch]) + momentum * mu);
        if (running_var)
          running_var[ch] = T((1.0 - momentum) * double(running_var[ch]) +
                              momentum * ss / double(count - 1));
      } else {
        mu = double(running_mean[ch]);
        is = 1.0 / std::sqrt(double(running_var[ch]) + eps);
      }
      mean[ch] = T(mu);
      invstd[ch] = T(is);
      // y = x * scale + shift
      const double sc = is * (w ? double(w[ch]) : 1.0);
      const T scale = T(sc), shift = T((b ? double(b[ch]) : 0.0) - mu * sc);
      for_runs(n, c, s, ch, [&](int64_t o) {
        for (int64_t k = 0; k < s; ++k) y[o + k] = x[o + k] * scale + shift;
      });
    }
  }, 1);
}

template <typename T>
void batch_norm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* mean,
                         const T* invstd, const T* w, int64_t n, int64_t c, int64_t s,
                         bool training) {
  const int64_t count = n * s;
  parallel_chunks(c, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t ch = c0; ch < c1; ++ch) {
      const double mu = double(mean[ch]), is = double(invstd[ch]);
      double a_dy[kSumLanes] = {}, a_dyx[kSumLanes] = {};  // sum dy, sum dy * (x - mean)
      for_runs(n, c, s, ch, [&](int64_t o) {
        for_lanes(s, [&](int64_t k, int l) {
          a_dy[l] += double(dy[o + k]);
          a_dyx[l] += double(dy[o + k]) * (double(x[o + k]) - mu);
        });
      });
      const double sdy = lane_total(a_dy), sdyx = lane_total(a_dyx);
      if (db) db[ch] = T(sdy);
      if (dw) dw[ch] = T(sdyx * is);
      if (!dx) continue;
      const double wis = (w ? double(w[ch]) : 1.0) * is;
      if (training) {
        // dx = wis * (dy - sdy / M - (x - mu) * is^2 * sdyx / M)
        const T a = T(wis), k1 = T(wis * sdy / double(count)), mu_t = T(mu);
        const T k2 = T(wis * is * is * sdyx / double(count));
        for_runs(n, c, s, ch, [&](int64_t o) {
          for (int64_t k = 0; k < s; ++k) dx[o + k] = a * dy[o + k] - k1 - (x[o + k] - mu_t) * k2;
        });
      } else {
        const T a = T(wis);
        for_runs(n, c, s, ch, [&](int64_t o) {
          for (int64_t k = 0; k < s; ++k) dx[o + k] = a * dy[o + k];
        });
      }
    }
  }, 1);
}

// y, x (M, D); mean, rstd (M,)
template <typename T>
void layer_norm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t m,
                        int64_t d, double eps) {
  parallel_chunks(m, kRowsPerBlock, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * d;
      double sum[kSumLanes] = {}, sq[kSumLanes] = {};
      for_lanes(d, [&](int64_t k, int l) { sum[l] += double(xr[k]); });
      const double mu = lane_total(sum) / double(d);
      for_lanes(d, [&](int64_t k, int l) {
        const double dv = double(xr[k]) - mu;
        sq[l] += dv * dv;
      });
      const double ss = lane_total(sq);
      const double is = 1.0 / std::sqrt(ss / double(d) + eps);
      mean[r] = T(mu);
      rstd[r] = T(is);
      const T mu_t = T(mu), is_t = T(is);
      T* yr = y + r * d;
      for (int64_t k = 0; k < d; ++k) {
        T v = (xr[k] - mu_t) * is_t;
        if (w) v = v * w[k];
        if (b) v = v + b[k];
        yr[k] = v;
      }
    }
  }, 1);
}

// dx, dy, x (M, D); dw, db (D,)
template <typename T>
void layer_norm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* mean,
                         const T* rstd, const T* w, int64_t m, int64_t d) {
  const int64_t blocks = (m + kRowsPerBlock - 1) / kRowsPerBlock;
  const bool want_params = dw || db;
  std::vector<double> part(want_params ? static_cast<size_t>(blocks * 2 * d) : 0);
  parallel_for(blocks, [&](int64_t blk) {
    double* pw = want_params ? part.data() + blk * 2 * d : nullptr;
    double* pb = want_params ? pw + d : nullptr;
    if (want_params)
      for (int64_t k = 0; k < 2 * d; ++k) pw[k] = 0.0;
    const int64_t r1 = (blk + 1) * kRowsPerBlock < m ? (blk + 1) * kRowsPerBlock : m;
    for (int64_t r = blk * kRowsPerBlock; r < r1; ++r) {
      const T* xr = x + r * d;
      const T* gr = dy + r * d;
      const double mu = double(mean[r]), is = double(rstd[r]);
      if (want_params) {
        for (int64_t k = 0; k < d; ++k) {
          pw[k] += double(gr[k]) * (double(xr[k]) - mu) * is;
          pb[k] += double(gr[k]);
        }
      }
      if (!dx) continue;
      double a_g[kSumLanes] = {}, a_gx[kSumLanes] = {};  // sum g, sum g * xhat
      for_lanes(d, [&](int64_t k, int l) {
        const double g = double(gr[k]) * (w ? double(w[k]) : 1.0);
        a_g[l] += g;
        a_gx[l] += g * (double(xr[k]) - mu) * is;
      });
      const double sg = lane_total(a_g), sgx = lane_total(a_gx);
      const T is_t = T(is), mu_t = T(mu), c1 = T(sg / double(d)), c2 = T(sgx / double(d));
      T* dr = dx + r * d;
      for (int64_t k = 0; k < d; ++k) {
        const T g = w ? gr[k] * w[k] : gr[k];
        dr[k] = is_t * (g - c1 - (xr[k] - mu_t) * is_t * c2);
      }
    }
  });
  if (!want_params) return;
  parallel_chunks(d, 1024, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      double sw = 0.0, sb = 0.0;
      for (int64_t blk = 0; blk < blocks; ++blk) {
        sw += part[static_cast<size_t>(blk * 2 * d + k)];
        sb += part[static_cast<size_t>(blk * 2 * d + d + k)];
      }
      if (dw) dw[k] = T(sw);
      if (db) db[k] = T(sb);
    }
  });
}

template <typename T>
void fill_fns(NormFns<T>& f) {
  f.batch_norm_forward = &batch_norm_forward<T>;
  f.batch_norm_backward = &batch_norm_backward<T>;
  f.layer_norm_forward = &layer_norm_forward<T>;
  f.layer_norm_backward = &layer_norm_backward<T>;
}

}  // namespace norm_detail

inline void fill_norm_table(NormTable& t) {
  norm_detail::fill_fns(t.f32);
  norm_detail::fill_fns(t.f64);
}

}  // namespace PYDL_ISA_NS
}  // namespace pydl
