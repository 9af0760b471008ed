// The reference convolution: plain direct loops (the generic dispatch target and the oracle the
// GEMM lowering is tested against). Formulas: conv/conv.hpp.
#include "conv/conv_common.hpp"

namespace pydl::generic {
namespace {

using conv_detail::bias_grad;
using conv_detail::blocked_sample_sum;

// y (N, C_out, OH, OW) = conv(x (N, C_in, H, W), w (C_out, C_in/G, KH, KW)) + b
template <typename T>
void forward(T* y, const T* x, const T* w, const T* b, const ConvShape& s) {
  const int64_t cig = s.c_in / s.groups, cog = s.c_out / s.groups;
  parallel_for(s.n * s.c_out, [&](int64_t t) {
    const int64_t n = t / s.c_out, co = t % s.c_out, g = co / cog;
    const T* wc = w + co * cig * s.kh * s.kw;
    T* yc = y + t * s.oh * s.ow;
    for (int64_t i = 0; i < s.oh; ++i) {
      for (int64_t j = 0; j < s.ow; ++j) {
        T acc = b ? b[co] : T(0);
        for (int64_t ci = 0; ci < cig; ++ci) {
          const T* xc = x + (n * s.c_in + g * cig + ci) * s.h * s.w;
          for (int64_t p = 0; p < s.kh; ++p) {
            const int64_t ih = i * s.sh - s.ph + p * s.dh;
            if (ih < 0 || ih >= s.h) continue;
            for (int64_t q = 0; q < s.kw; ++q) {
              const int64_t iw = j * s.sw - s.pw + q * s.dw;
              if (iw < 0 || iw >= s.w) continue;
              acc += wc[(ci * s.kh + p) * s.kw + q] * xc[ih * s.w + iw];
            }
          }
        }
        yc[i * s.ow + j] = acc;
      }
    }
  });
}

// dx (N, C_in, H, W) from dy (N, C_out, OH, OW) and w: a gather per input element (no scatter).
template <typename T>
void backward_data(T* dx, const T* dy, const T* w, const ConvShape& s) {
  const int64_t cig = s.c_in / s.groups, cog = s.c_out / s.groups;
  parallel_for(s.n * s.c_in, [&](int64_t t) {
    const int64_t n = t / s.c_in, c = t % s.c_in, g = c / cig, ci = c % cig;
    T* dxc = dx + t * s.h * s.w;
    for (int64_t ih = 0; ih < s.h; ++ih) {
      for (int64_t iw = 0; iw < s.w; ++iw) {
        T acc = T(0);
        for (int64_t co = g * cog; co < (g + 1) * cog; ++co) {
          const T* dyc = dy + (n * s.c_out + co) * s.oh * s.ow;
          const T* wc = w + (co * cig + ci) * s.kh * s.kw;
          for (int64_t p = 0; p < s.kh; ++p) {
            const int64_t ti = ih + s.ph - p * s.dh;  // = i * SH for the output row i that reads ih
            if (ti < 0 || ti % s.sh != 0 || ti / s.sh >= s.oh) continue;
            for (int64_t q = 0; q < s.kw; ++q) {
              const int64_t tj = iw + s.pw - q * s.dw;
              if (tj < 0 || tj % s.sw != 0 || tj / s.sw >= s.ow) continue;
              acc += wc[p * s.kw + q] * dyc[(ti / s.sh) * s.ow + tj / s.sw];
            }
          }
        }
        dxc[ih * s.w + iw] = acc;
      }
    }
  });
}

// dw (C_out, C_in/G, KH, KW) and db (C_out,) from dy and x.
template <typename T>
void backward_weight(T* dw, T* db, const T* dy, const T* x, const ConvShape& s) {
  const int64_t cig = s.c_in / s.groups, cog = s.c_out / s.groups;
  const int64_t per_co = cig * s.kh * s.kw;
  if (dw) blocked_sample_sum(dw, s.c_out * per_co, s.n, [&](int64_t n0, int64_t n1, T* out) {
    for (int64_t e = 0; e < s.c_out * per_co; ++e) {
      const int64_t co = e / per_co, ci = (e / (s.kh * s.kw)) % cig;
      const int64_t p = (e / s.kw) % s.kh, q = e % s.kw, g = co / cog;
      T acc = T(0);
      for (int64_t n = n0; n < n1; ++n) {
        const T* dyc = dy + (n * s.c_out + co) * s.oh * s.ow;
        const T* xc = x + (n * s.c_in + g * cig + ci) * s.h * s.w;
        for (int64_t i = 0; i < s.oh; ++i) {
          const int64_t ih = i * s.sh - s.ph + p * s.dh;
          if (ih < 0 || ih >= s.h) continue;
          for (int64_t j = 0; j < s.ow; ++j) {
            const int64_t iw = j * s.sw - s.pw + q * s.dw;
            if (iw >= 0 && iw < s.w) acc += dyc[i * s.ow + j] * xc[ih * s.w + iw];
          }
        }
      }
      out[e] = acc;
    }
  });
  if (db) bias_grad(db, dy, s);
}

template <typename T>
void fill_fns(ConvFns<T>& f) {
  f.forward = &forward<T>;
  f.backward_data = &backward_data<T>;
  f.backward_weight = &backward_weight<T>;
}

}  // namespace

void fill_conv(ConvTable& t) {
  fill_fns(t.f32);
  fill_fns(t.f64);
}

}  // namespace pydl::generic
