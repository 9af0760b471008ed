// A small SIMD vector layer over AVX-512 (zmm) and AVX2 (ymm) for float and double kernels.
//
// Include it only from translation units compiled with ISA flags (*_avx2.cpp / *_avx512.cpp or
// headers they include): everything lives in pydl::PYDL_ISA_NS::simd, so each ISA gets its own
// copy of these inline functions (see common/isa.hpp).
//
// Vf / Vd hold W floats / doubles; Mf / Md are the matching lane masks (k-registers on AVX-512,
// all-ones lanes on AVX2). Functions are overloaded on the vector or pointer type, so a kernel
// template written against Vec<T> compiles for both dtypes and both ISAs.
//
// Semantics worth knowing:
//  - min(a, b) / max(a, b) follow the x86 rule: if either operand is NaN the result is b. Put the
//    value whose NaN must survive second (clamp(x) = max(lo, min(hi, x)) keeps a NaN x).
//  - Comparisons are ordered and quiet: lt/le/gt/ge/eq are false when a lane is NaN.
//  - load_partial / store_partial touch only the first n < W lanes' memory (masked loads; on
//    AVX2, stores of 4, 2 and 1 lanes), so ragged tails never read or write out of bounds.
//  - erf / erfc (float64, and float32 through float64) are accurate to a few ulp everywhere,
//    relative to the result in erfc's underflowing tail too.
//  - exp / expm1 are accurate to about 1-2 ulp over the whole range, give +inf on overflow, 0 (or
//    -1 for expm1) on underflow with correct gradual underflow, and NaN for NaN; they assume the
//    default rounding mode and no -ffast-math.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "common/erf_coeffs.hpp"
#include "common/isa.hpp"

#if !defined(__AVX2__) || !defined(__FMA__)
#error "common/simd.hpp needs AVX2+FMA or AVX-512 compile flags (include it from *_avx2/_avx512 TUs)"
#endif

namespace pydl {
namespace PYDL_ISA_NS {
namespace simd {

// Stores the first w (0..8 / 0..4) lanes of a 256-bit vector at d with full, 128-, 64- and 32-bit
// stores, touching no other memory. AMD CPUs up to Zen 3 run a masked store (vmaskmovps) as a
// long microcoded sequence (it made packing a 6-row GEMM panel slower than the multiply-adds); this
// is at most three plain stores. Used by both ISAs (AVX-512 code handles 256-bit blocks too).
inline void store_lanes(float* d, __m256 v, int64_t w) {
  if (w == 8) {
    _mm256_storeu_ps(d, v);
    return;
  }
  __m128 part = _mm256_castps256_ps128(v);
  if (w >= 4) {
    _mm_storeu_ps(d, part);
    part = _mm256_extractf128_ps(v, 1);
    d += 4;
    w -= 4;
  }
  if (w >= 2) {
    _mm_storel_pi(reinterpret_cast<__m64*>(d), part);
    part = _mm_movehl_ps(part, part);
    d += 2;
    w -= 2;
  }
  if (w == 1) _mm_store_ss(d, part);
}

inline void store_lanes(double* d, __m256d v, int64_t w) {
  if (w == 4) {
    _mm256_storeu_pd(d, v);
    return;
  }
  __m128d part = _mm256_castpd256_pd128(v);
  if (w >= 2) {
    _mm_storeu_pd(d, part);
    part = _mm256_extractf128_pd(v, 1);
    d += 2;
    w -= 2;
  }
  if (w == 1) _mm_store_sd(d, part);
}

#if defined(__AVX512F__)

struct Mf { __mmask16 m; };
struct Md { __mmask8 m; };
struct Vf {
  using T = float;
  using Mask = Mf;
  static constexpr int W = 16;
  __m512 v;
};
struct Vd {
  using T = double;
  using Mask = Md;
  static constexpr int W = 8;
  __m512d v;
};

inline Vf set1(float a) { return {_mm512_set1_ps(a)}; }
inline Vd set1(double a) { return {_mm512_set1_pd(a)}; }
inline Vf load(const float* p) { return {_mm512_load_ps(p)}; }
inline Vd load(const double* p) { return {_mm512_load_pd(p)}; }
inline Vf loadu(const float* p) { return {_mm512_loadu_ps(p)}; }
inline Vd loadu(const double* p) { return {_mm512_loadu_pd(p)}; }
inline void store(float* p, Vf a) { _mm512_store_ps(p, a.v); }
inline void store(double* p, Vd a) { _mm512_store_pd(p, a.v); }
inline void storeu(float* p, Vf a) { _mm512_storeu_ps(p, a.v); }
inline void storeu(double* p, Vd a) { _mm512_storeu_pd(p, a.v); }

// Mask of the first n lanes, 0 <= n <= W.
inline Mf first_lanes_f(int64_t n) { return {static_cast<__mmask16>((1u << n) - 1u)}; }
inline Md first_lanes_d(int64_t n) { return {static_cast<__mmask8>((1u << n) - 1u)}; }

// The first n lanes from p, the others `fill`; no memory beyond p[n - 1] is touched.
inline Vf load_partial(const float* p, int64_t n, float fill = 0.0f) {
  return {_mm512_mask_loadu_ps(_mm512_set1_ps(fill), first_lanes_f(n).m, p)};
}
inline Vd load_partial(const double* p, int64_t n, double fill = 0.0) {
  return {_mm512_mask_loadu_pd(_mm512_set1_pd(fill), first_lanes_d(n).m, p)};
}
inline void store_partial(float* p, Vf a, int64_t n) {
  _mm512_mask_storeu_ps(p, first_lanes_f(n).m, a.v);
}
inline void store_partial(double* p, Vd a, int64_t n) {
  _mm512_mask_storeu_pd(p, first_lanes_d(n).m, a.v);
}

inline Vf operator+(Vf a, Vf b) { return {_mm512_add_ps(a.v, b.v)}; }
inline Vd operator+(Vd a, Vd b) { return {_mm512_add_pd(a.v, b.v)}; }
inline Vf operator-(Vf a, Vf b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline Vd operator-(Vd a, Vd b) { return {_mm512_sub_pd(a.v, b.v)}; }
inline Vf operator*(Vf a, Vf b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline Vd operator*(Vd a, Vd b) { return {_mm512_mul_pd(a.v, b.v)}; }
inline Vf operator/(Vf a, Vf b) { return {_mm512_div_ps(a.v, b.v)}; }
inline Vd operator/(Vd a, Vd b) { return {_mm512_div_pd(a.v, b.v)}; }
// a * b + c and c - a * b with one rounding.
inline Vf fmadd(Vf a, Vf b, Vf c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline Vd fmadd(Vd a, Vd b, Vd c) { return {_mm512_fmadd_pd(a.v, b.v, c.v)}; }
inline Vf fnmadd(Vf a, Vf b, Vf c) { return {_mm512_fnmadd_ps(a.v, b.v, c.v)}; }
inline Vd fnmadd(Vd a, Vd b, Vd c) { return {_mm512_fnmadd_pd(a.v, b.v, c.v)}; }
inline Vf min(Vf a, Vf b) { return {_mm512_min_ps(a.v, b.v)}; }
inline Vd min(Vd a, Vd b) { return {_mm512_min_pd(a.v, b.v)}; }
inline Vf max(Vf a, Vf b) { return {_mm512_max_ps(a.v, b.v)}; }
inline Vd max(Vd a, Vd b) { return {_mm512_max_pd(a.v, b.v)}; }

inline Vf abs(Vf a) { return {_mm512_abs_ps(a.v)}; }
inline Vd abs(Vd a) { return {_mm512_abs_pd(a.v)}; }
// |mag| with the sign bit of sgn. Ternary-logic 0xAC is "mask ? sgn : mag" bit by bit.
inline Vf copysign(Vf mag, Vf sgn) {
  __m512i m = _mm512_set1_epi32(INT32_MIN);
  return {_mm512_castsi512_ps(_mm512_ternarylogic_epi32(m, _mm512_castps_si512(mag.v),
                                                        _mm512_castps_si512(sgn.v), 0xAC))};
}
inline Vd copysign(Vd mag, Vd sgn) {
  __m512i m = _mm512_set1_epi64(INT64_MIN);
  return {_mm512_castsi512_pd(_mm512_ternarylogic_epi64(m, _mm512_castpd_si512(mag.v),
                                                        _mm512_castpd_si512(sgn.v), 0xAC))};
}

inline Mf lt(Vf a, Vf b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)}; }
inline Md lt(Vd a, Vd b) { return {_mm512_cmp_pd_mask(a.v, b.v, _CMP_LT_OQ)}; }
inline Mf le(Vf a, Vf b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ)}; }
inline Md le(Vd a, Vd b) { return {_mm512_cmp_pd_mask(a.v, b.v, _CMP_LE_OQ)}; }
inline Mf gt(Vf a, Vf b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ)}; }
inline Md gt(Vd a, Vd b) { return {_mm512_cmp_pd_mask(a.v, b.v, _CMP_GT_OQ)}; }
inline Mf ge(Vf a, Vf b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ)}; }
inline Md ge(Vd a, Vd b) { return {_mm512_cmp_pd_mask(a.v, b.v, _CMP_GE_OQ)}; }
inline Mf eq(Vf a, Vf b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_EQ_OQ)}; }
inline Md eq(Vd a, Vd b) { return {_mm512_cmp_pd_mask(a.v, b.v, _CMP_EQ_OQ)}; }
inline Mf isnan(Vf a) { return {_mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q)}; }
inline Md isnan(Vd a) { return {_mm512_cmp_pd_mask(a.v, a.v, _CMP_UNORD_Q)}; }
inline Mf operator&(Mf a, Mf b) { return {static_cast<__mmask16>(a.m & b.m)}; }
inline Md operator&(Md a, Md b) { return {static_cast<__mmask8>(a.m & b.m)}; }
inline Mf operator|(Mf a, Mf b) { return {static_cast<__mmask16>(a.m | b.m)}; }
inline Md operator|(Md a, Md b) { return {static_cast<__mmask8>(a.m | b.m)}; }
inline Mf operator~(Mf a) { return {static_cast<__mmask16>(~a.m)}; }
inline Md operator~(Md a) { return {static_cast<__mmask8>(~a.m)}; }
// m ? a : b per lane.
inline Vf select(Mf m, Vf a, Vf b) { return {_mm512_mask_blend_ps(m.m, b.v, a.v)}; }
inline Vd select(Md m, Vd a, Vd b) { return {_mm512_mask_blend_pd(m.m, b.v, a.v)}; }

inline Vf round_nearest(Vf a) {
  return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline Vd round_nearest(Vd a) {
  return {_mm512_roundscale_pd(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline Vf floor(Vf a) {
  return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)};
}
inline Vd floor(Vd a) {
  return {_mm512_roundscale_pd(a.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)};
}

// Bit pattern of a shifted left by `bits` (per 32/64-bit lane): the exponent-field builder of pow2i.
inline Vf shift_bits_left(Vf a, int bits) {
  return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(a.v), bits))};
}
inline Vd shift_bits_left(Vd a, int bits) {
  return {_mm512_castsi512_pd(_mm512_slli_epi64(_mm512_castpd_si512(a.v), bits))};
}

// The 16 floats of a as doubles: lanes 0-7 in lo, 8-15 in hi (exact).
inline void widen(Vf a, Vd& lo, Vd& hi) {
  lo.v = _mm512_cvtps_pd(_mm512_castps512_ps256(a.v));
  hi.v = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a.v), 1)));
}

// W consecutive values of p as doubles (floats widened exactly); the partial forms read only the
// first n < W (the other lanes are 0).
inline Vd load_f64(const double* p) { return loadu(p); }
inline Vd load_f64(const float* p) { return {_mm512_cvtps_pd(_mm256_loadu_ps(p))}; }
inline Vd load_f64_partial(const double* p, int64_t n) { return load_partial(p, n); }
inline Vd load_f64_partial(const float* p, int64_t n) {
  return {_mm512_cvtps_pd(_mm256_maskz_loadu_ps(first_lanes_d(n).m, p))};
}

// Lane j set iff bit j of `bits` is (bits above the lane count are ignored).
template <typename V>
typename V::Mask mask_from_bits(uint64_t bits);
template <>
inline Mf mask_from_bits<Vf>(uint64_t bits) { return {static_cast<__mmask16>(bits)}; }
template <>
inline Md mask_from_bits<Vd>(uint64_t bits) { return {static_cast<__mmask8>(bits)}; }

// The inverse of widen: lo's 8 doubles rounded to floats in lanes 0-7, hi's in lanes 8-15.
inline Vf narrow(Vd lo, Vd hi) {
  __m256 l = _mm512_cvtpd_ps(lo.v), h = _mm512_cvtpd_ps(hi.v);
  return {_mm512_castpd_ps(
      _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(l)), _mm256_castps_pd(h), 1))};
}

// base[index[i]] per lane; index holds integer values in [0, 2^31). Adding 2^52 puts the integer
// in the low mantissa bits, and subtracting 2^52's bit pattern leaves it as an int64 lane.
inline Vd gather(const double* base, Vd index) {
  const __m512d magic = _mm512_set1_pd(0x1p52);
  __m512i i = _mm512_sub_epi64(_mm512_castpd_si512(_mm512_add_pd(index.v, magic)),
                               _mm512_castpd_si512(magic));
  return {_mm512_i64gather_pd(i, base, 8)};
}

// 128-bit chunks (see the note before kChunk below): chunk q of the result is
// p[q * stride .. q * stride + kChunk), one from each of W / kChunk places stride apart.
inline Vf load_chunks(const float* p, int64_t stride) {
  __m512 v = _mm512_castps128_ps512(_mm_loadu_ps(p));
  v = _mm512_insertf32x4(v, _mm_loadu_ps(p + stride), 1);
  v = _mm512_insertf32x4(v, _mm_loadu_ps(p + 2 * stride), 2);
  return {_mm512_insertf32x4(v, _mm_loadu_ps(p + 3 * stride), 3)};
}
inline Vd load_chunks(const double* p, int64_t stride) {
  __m512d v = _mm512_castpd128_pd512(_mm_loadu_pd(p));
  v = _mm512_insertf64x2(v, _mm_loadu_pd(p + stride), 1);
  v = _mm512_insertf64x2(v, _mm_loadu_pd(p + 2 * stride), 2);
  return {_mm512_insertf64x2(v, _mm_loadu_pd(p + 3 * stride), 3)};
}
// The first nq chunks, each its first len values; everything else 0 and not read.
inline Vf load_chunks_partial(const float* p, int64_t stride, int64_t nq, int64_t len) {
  const __mmask8 m = static_cast<__mmask8>((1u << len) - 1u);
  __m512 v = _mm512_setzero_ps();
  if (nq > 0) v = _mm512_insertf32x4(v, _mm_maskz_loadu_ps(m, p), 0);
  if (nq > 1) v = _mm512_insertf32x4(v, _mm_maskz_loadu_ps(m, p + stride), 1);
  if (nq > 2) v = _mm512_insertf32x4(v, _mm_maskz_loadu_ps(m, p + 2 * stride), 2);
  if (nq > 3) v = _mm512_insertf32x4(v, _mm_maskz_loadu_ps(m, p + 3 * stride), 3);
  return {v};
}
inline Vd load_chunks_partial(const double* p, int64_t stride, int64_t nq, int64_t len) {
  const __mmask8 m = static_cast<__mmask8>((1u << len) - 1u);
  __m512d v = _mm512_setzero_pd();
  if (nq > 0) v = _mm512_insertf64x2(v, _mm_maskz_loadu_pd(m, p), 0);
  if (nq > 1) v = _mm512_insertf64x2(v, _mm_maskz_loadu_pd(m, p + stride), 1);
  if (nq > 2) v = _mm512_insertf64x2(v, _mm_maskz_loadu_pd(m, p + 2 * stride), 2);
  if (nq > 3) v = _mm512_insertf64x2(v, _mm_maskz_loadu_pd(m, p + 3 * stride), 3);
  return {v};
}
// In-chunk transposes (see transpose_chunks below); in-lane shuffles only.
inline void transpose_chunks(Vf (&x)[4]) {
  const __m512 t0 = _mm512_unpacklo_ps(x[0].v, x[1].v), t1 = _mm512_unpackhi_ps(x[0].v, x[1].v);
  const __m512 t2 = _mm512_unpacklo_ps(x[2].v, x[3].v), t3 = _mm512_unpackhi_ps(x[2].v, x[3].v);
  x[0].v = _mm512_shuffle_ps(t0, t2, 0x44);
  x[1].v = _mm512_shuffle_ps(t0, t2, 0xEE);
  x[2].v = _mm512_shuffle_ps(t1, t3, 0x44);
  x[3].v = _mm512_shuffle_ps(t1, t3, 0xEE);
}
inline void transpose_chunks(Vd (&x)[2]) {
  const __m512d t0 = _mm512_unpacklo_pd(x[0].v, x[1].v), t1 = _mm512_unpackhi_pd(x[0].v, x[1].v);
  x[0].v = t0;
  x[1].v = t1;
}

inline float reduce_add(Vf a) { return _mm512_reduce_add_ps(a.v); }
inline double reduce_add(Vd a) { return _mm512_reduce_add_pd(a.v); }
inline float reduce_max(Vf a) { return _mm512_reduce_max_ps(a.v); }
inline double reduce_max(Vd a) { return _mm512_reduce_max_pd(a.v); }

#else  // AVX2 + FMA

struct Mf { __m256 m; };
struct Md { __m256d m; };
struct Vf {
  using T = float;
  using Mask = Mf;
  static constexpr int W = 8;
  __m256 v;
};
struct Vd {
  using T = double;
  using Mask = Md;
  static constexpr int W = 4;
  __m256d v;
};

inline Vf set1(float a) { return {_mm256_set1_ps(a)}; }
inline Vd set1(double a) { return {_mm256_set1_pd(a)}; }
inline Vf load(const float* p) { return {_mm256_load_ps(p)}; }
inline Vd load(const double* p) { return {_mm256_load_pd(p)}; }
inline Vf loadu(const float* p) { return {_mm256_loadu_ps(p)}; }
inline Vd loadu(const double* p) { return {_mm256_loadu_pd(p)}; }
inline void store(float* p, Vf a) { _mm256_store_ps(p, a.v); }
inline void store(double* p, Vd a) { _mm256_store_pd(p, a.v); }
inline void storeu(float* p, Vf a) { _mm256_storeu_ps(p, a.v); }
inline void storeu(double* p, Vd a) { _mm256_storeu_pd(p, a.v); }

// Mask of the first n lanes, 0 <= n <= W, as the integer vector maskload/maskstore take.
inline __m256i first_lanes_f(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256i first_lanes_d(int64_t n) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}

// The first n lanes from p, the others `fill`; masked lanes are not read (no fault past the end).
inline Vf load_partial(const float* p, int64_t n, float fill = 0.0f) {
  __m256i m = first_lanes_f(n);
  return {_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m))};
}
inline Vd load_partial(const double* p, int64_t n, double fill = 0.0) {
  __m256i m = first_lanes_d(n);
  return {_mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m))};
}
inline void store_partial(float* p, Vf a, int64_t n) { store_lanes(p, a.v, n); }
inline void store_partial(double* p, Vd a, int64_t n) { store_lanes(p, a.v, n); }

inline Vf operator+(Vf a, Vf b) { return {_mm256_add_ps(a.v, b.v)}; }
inline Vd operator+(Vd a, Vd b) { return {_mm256_add_pd(a.v, b.v)}; }
inline Vf operator-(Vf a, Vf b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline Vd operator-(Vd a, Vd b) { return {_mm256_sub_pd(a.v, b.v)}; }
inline Vf operator*(Vf a, Vf b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline Vd operator*(Vd a, Vd b) { return {_mm256_mul_pd(a.v, b.v)}; }
inline Vf operator/(Vf a, Vf b) { return {_mm256_div_ps(a.v, b.v)}; }
inline Vd operator/(Vd a, Vd b) { return {_mm256_div_pd(a.v, b.v)}; }
inline Vf fmadd(Vf a, Vf b, Vf c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline Vd fmadd(Vd a, Vd b, Vd c) { return {_mm256_fmadd_pd(a.v, b.v, c.v)}; }
inline Vf fnmadd(Vf a, Vf b, Vf c) { return {_mm256_fnmadd_ps(a.v, b.v, c.v)}; }
inline Vd fnmadd(Vd a, Vd b, Vd c) { return {_mm256_fnmadd_pd(a.v, b.v, c.v)}; }
inline Vf min(Vf a, Vf b) { return {_mm256_min_ps(a.v, b.v)}; }
inline Vd min(Vd a, Vd b) { return {_mm256_min_pd(a.v, b.v)}; }
inline Vf max(Vf a, Vf b) { return {_mm256_max_ps(a.v, b.v)}; }
inline Vd max(Vd a, Vd b) { return {_mm256_max_pd(a.v, b.v)}; }

inline Vf abs(Vf a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
inline Vd abs(Vd a) { return {_mm256_andnot_pd(_mm256_set1_pd(-0.0), a.v)}; }
inline Vf copysign(Vf mag, Vf sgn) {
  __m256 s = _mm256_set1_ps(-0.0f);
  return {_mm256_or_ps(_mm256_andnot_ps(s, mag.v), _mm256_and_ps(s, sgn.v))};
}
inline Vd copysign(Vd mag, Vd sgn) {
  __m256d s = _mm256_set1_pd(-0.0);
  return {_mm256_or_pd(_mm256_andnot_pd(s, mag.v), _mm256_and_pd(s, sgn.v))};
}

inline Mf lt(Vf a, Vf b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
inline Md lt(Vd a, Vd b) { return {_mm256_cmp_pd(a.v, b.v, _CMP_LT_OQ)}; }
inline Mf le(Vf a, Vf b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)}; }
inline Md le(Vd a, Vd b) { return {_mm256_cmp_pd(a.v, b.v, _CMP_LE_OQ)}; }
inline Mf gt(Vf a, Vf b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
inline Md gt(Vd a, Vd b) { return {_mm256_cmp_pd(a.v, b.v, _CMP_GT_OQ)}; }
inline Mf ge(Vf a, Vf b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ)}; }
inline Md ge(Vd a, Vd b) { return {_mm256_cmp_pd(a.v, b.v, _CMP_GE_OQ)}; }
inline Mf eq(Vf a, Vf b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ)}; }
inline Md eq(Vd a, Vd b) { return {_mm256_cmp_pd(a.v, b.v, _CMP_EQ_OQ)}; }
inline Mf isnan(Vf a) { return {_mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q)}; }
inline Md isnan(Vd a) { return {_mm256_cmp_pd(a.v, a.v, _CMP_UNORD_Q)}; }
inline Mf operator&(Mf a, Mf b) { return {_mm256_and_ps(a.m, b.m)}; }
inline Md operator&(Md a, Md b) { return {_mm256_and_pd(a.m, b.m)}; }
inline Mf operator|(Mf a, Mf b) { return {_mm256_or_ps(a.m, b.m)}; }
inline Md operator|(Md a, Md b) { return {_mm256_or_pd(a.m, b.m)}; }
inline Mf operator~(Mf a) {
  return {_mm256_xor_ps(a.m, _mm256_castsi256_ps(_mm256_set1_epi32(-1)))};
}
inline Md operator~(Md a) {
  return {_mm256_xor_pd(a.m, _mm256_castsi256_pd(_mm256_set1_epi64x(-1)))};
}
inline Vf select(Mf m, Vf a, Vf b) { return {_mm256_blendv_ps(b.v, a.v, m.m)}; }
inline Vd select(Md m, Vd a, Vd b) { return {_mm256_blendv_pd(b.v, a.v, m.m)}; }

inline Vf round_nearest(Vf a) {
  return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline Vd round_nearest(Vd a) {
  return {_mm256_round_pd(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline Vf floor(Vf a) { return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)}; }
inline Vd floor(Vd a) { return {_mm256_round_pd(a.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)}; }

inline Vf shift_bits_left(Vf a, int bits) {
  return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(a.v), bits))};
}
inline Vd shift_bits_left(Vd a, int bits) {
  return {_mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(a.v), bits))};
}

// The 8 floats of a as doubles: lanes 0-3 in lo, 4-7 in hi (exact).
inline void widen(Vf a, Vd& lo, Vd& hi) {
  lo.v = _mm256_cvtps_pd(_mm256_castps256_ps128(a.v));
  hi.v = _mm256_cvtps_pd(_mm256_extractf128_ps(a.v, 1));
}

// W consecutive values of p as doubles (floats widened exactly); the partial forms read only the
// first n < W (the other lanes are 0).
inline Vd load_f64(const double* p) { return loadu(p); }
inline Vd load_f64(const float* p) { return {_mm256_cvtps_pd(_mm_loadu_ps(p))}; }
inline Vd load_f64_partial(const double* p, int64_t n) { return load_partial(p, n); }
inline Vd load_f64_partial(const float* p, int64_t n) {
  const __m128i m =
      _mm_cmpgt_epi32(_mm_set1_epi32(static_cast<int>(n)), _mm_setr_epi32(0, 1, 2, 3));
  return {_mm256_cvtps_pd(_mm_maskload_ps(p, m))};
}

// Lane j set iff bit j of `bits` is (bits above the lane count are ignored).
template <typename V>
typename V::Mask mask_from_bits(uint64_t bits);
template <>
inline Mf mask_from_bits<Vf>(uint64_t bits) {
  const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i b = _mm256_set1_epi32(static_cast<int>(bits & 0xFF));
  return {_mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(b, bit), bit))};
}
template <>
inline Md mask_from_bits<Vd>(uint64_t bits) {
  const __m256i bit = _mm256_setr_epi64x(1, 2, 4, 8);
  const __m256i b = _mm256_set1_epi64x(static_cast<int64_t>(bits & 0xF));
  return {_mm256_castsi256_pd(_mm256_cmpeq_epi64(_mm256_and_si256(b, bit), bit))};
}

// The inverse of widen: lo's 4 doubles rounded to floats in lanes 0-3, hi's in lanes 4-7.
inline Vf narrow(Vd lo, Vd hi) {
  return {_mm256_set_m128(_mm256_cvtpd_ps(hi.v), _mm256_cvtpd_ps(lo.v))};
}

// base[index[i]] per lane; index holds integer values in [0, 2^31) (see the AVX-512 version).
inline Vd gather(const double* base, Vd index) {
  const __m256d magic = _mm256_set1_pd(0x1p52);
  __m256i i = _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(index.v, magic)),
                               _mm256_castpd_si256(magic));
  return {_mm256_i64gather_pd(base, i, 8)};
}

// 128-bit chunks (see the note before kChunk below): chunk q of the result is
// p[q * stride .. q * stride + kChunk), one from each of W / kChunk places stride apart. A 128-bit
// load plus an insert from memory: no shuffle-unit work for the lane crossing.
inline Vf load_chunks(const float* p, int64_t stride) {
  return {_mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p)), _mm_loadu_ps(p + stride), 1)};
}
inline Vd load_chunks(const double* p, int64_t stride) {
  return {_mm256_insertf128_pd(_mm256_castpd128_pd256(_mm_loadu_pd(p)), _mm_loadu_pd(p + stride), 1)};
}
// The first nq chunks, each its first len values; everything else 0 and not read.
inline Vf load_chunks_partial(const float* p, int64_t stride, int64_t nq, int64_t len) {
  const __m128i m = _mm_cmpgt_epi32(_mm_set1_epi32(static_cast<int>(len)), _mm_setr_epi32(0, 1, 2, 3));
  const __m128 lo = nq > 0 ? _mm_maskload_ps(p, m) : _mm_setzero_ps();
  const __m128 hi = nq > 1 ? _mm_maskload_ps(p + stride, m) : _mm_setzero_ps();
  return {_mm256_set_m128(hi, lo)};
}
inline Vd load_chunks_partial(const double* p, int64_t stride, int64_t nq, int64_t len) {
  const __m128i m = _mm_cmpgt_epi64(_mm_set1_epi64x(len), _mm_set_epi64x(1, 0));
  const __m128d lo = nq > 0 ? _mm_maskload_pd(p, m) : _mm_setzero_pd();
  const __m128d hi = nq > 1 ? _mm_maskload_pd(p + stride, m) : _mm_setzero_pd();
  return {_mm256_set_m128d(hi, lo)};
}
// In-chunk transposes (see transpose_chunks below); in-lane shuffles only.
inline void transpose_chunks(Vf (&x)[4]) {
  const __m256 t0 = _mm256_unpacklo_ps(x[0].v, x[1].v), t1 = _mm256_unpackhi_ps(x[0].v, x[1].v);
  const __m256 t2 = _mm256_unpacklo_ps(x[2].v, x[3].v), t3 = _mm256_unpackhi_ps(x[2].v, x[3].v);
  x[0].v = _mm256_shuffle_ps(t0, t2, 0x44);
  x[1].v = _mm256_shuffle_ps(t0, t2, 0xEE);
  x[2].v = _mm256_shuffle_ps(t1, t3, 0x44);
  x[3].v = _mm256_shuffle_ps(t1, t3, 0xEE);
}
inline void transpose_chunks(Vd (&x)[2]) {
  const __m256d t0 = _mm256_unpacklo_pd(x[0].v, x[1].v), t1 = _mm256_unpackhi_pd(x[0].v, x[1].v);
  x[0].v = t0;
  x[1].v = t1;
}

inline float reduce_add(Vf a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline double reduce_add(Vd a) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}
inline float reduce_max(Vf a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline double reduce_max(Vd a) {
  __m128d s = _mm_max_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
  s = _mm_max_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

#endif

template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  using type = Vf;
};
template <>
struct VecOf<double> {
  using type = Vd;
};
// The vector of T for this ISA: Vec<float>::W lanes, Vec<float>::Mask for comparisons.
template <typename T>
using Vec = typename VecOf<T>::type;

// Chunks: reading a matrix across its rows. A 128-bit chunk holds kChunk<T> = 4 floats or 2
// doubles; a vector holds W / kChunk of them. load_chunks(p, s) puts kChunk consecutive values of
// each of W / kChunk rows (s apart) in one vector; with x[i] = load_chunks(m + i * ld, kChunk * ld)
// for i < kChunk, transpose_chunks(x) leaves in x[l] element l of rows 0..W-1 in order: column l
// of a W x kChunk block of a row-major matrix, from kChunk loads (plus inserts) and 2 * kChunk
// (float) or kChunk (double) shuffles that never cross a 128-bit lane.
template <typename T>
constexpr int kChunk = static_cast<int>(16 / sizeof(T));

template <typename V>
V zero() {
  return set1(typename V::T(0));
}
// clamp(x, lo, hi) that keeps a NaN x (see the min/max note above).
template <typename V>
V clamp(V x, V lo, V hi) {
  return max(lo, min(hi, x));
}

// Constants of the exp family. Taylor coefficients 1/n! suffice: after Cody-Waite reduction
// |r| <= ln2/2, and the first dropped term r^(N+1)/(N+1)! is below 0.25 ulp relative to r.
template <typename T>
struct ExpConst;
template <>
struct ExpConst<float> {
  static constexpr int kMantBits = 23;
  static constexpr float kBias = 127.0f;
  static constexpr float kLog2e = 1.44269504088896341f;
  // ln2 split so that k * kLn2Hi is exact for |k| < 2^15 (kLn2Hi has 9 significant bits).
  static constexpr float kLn2Hi = 0.693359375f;
  static constexpr float kLn2Lo = -2.12194440e-4f;
  // exp(x) rounds to +inf above kHi and to 0 below kLo, so clamping there changes nothing.
  static constexpr float kHi = 89.0f;
  static constexpr float kLo = -105.0f;
  // exp(x) is subnormal below kLoNormal (ln of the smallest normal, 2^-126).
  static constexpr float kLoNormal = -87.33654475f;
  // expm1(x) rounds to -1 below kLoM1 (exp(x) < 2^-26).
  static constexpr float kLoM1 = -19.0f;
  // Above this k, 2^k overflows but exp(x) - 1 == exp(x) in float anyway.
  static constexpr float kBigK = 100.0f;
  static constexpr float kMaxBounded = 80.0f;
  static constexpr int kDegree = 7;
  static constexpr float kInvFact[kDegree + 1] = {
      1.0f, 1.0f, 1.0f / 2, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040};
};
template <>
struct ExpConst<double> {
  static constexpr int kMantBits = 52;
  static constexpr double kBias = 1023.0;
  static constexpr double kLog2e = 1.4426950408889634074;
  // k * kLn2Hi exact for |k| < 2^38 (15 significant bits).
  static constexpr double kLn2Hi = 0.693145751953125;
  static constexpr double kLn2Lo = 1.42860682030941723212e-6;
  static constexpr double kHi = 710.0;
  static constexpr double kLo = -746.0;
  static constexpr double kLoNormal = -708.396418532264;  // ln 2^-1022
  static constexpr double kLoM1 = -39.0;
  static constexpr double kBigK = 1000.0;
  static constexpr double kMaxBounded = 700.0;
  static constexpr int kDegree = 13;
  static constexpr double kInvFact[kDegree + 1] = {1.0,
                                                   1.0,
                                                   1.0 / 2,
                                                   1.0 / 6,
                                                   1.0 / 24,
                                                   1.0 / 120,
                                                   1.0 / 720,
                                                   1.0 / 5040,
                                                   1.0 / 40320,
                                                   1.0 / 362880,
                                                   1.0 / 3628800,
                                                   1.0 / 39916800,
                                                   1.0 / 479001600,
                                                   1.0 / 6227020800.0};
};

// 2^k for integer-valued k with a normal result (float: -126 <= k <= 127). Adding 2^mant + bias
// puts k + bias in the low mantissa bits; shifting them into the exponent field builds 2^k.
template <typename V>
V pow2i(V k) {
  using C = ExpConst<typename V::T>;
  using T = typename V::T;
  const T magic = T(int64_t{1} << C::kMantBits) + C::kBias;
  return shift_bits_left(k + set1(magic), C::kMantBits);
}

namespace detail {

// Shared range reduction: x = k * ln2 + r with |r| <= ln2 / 2; returns k (integer-valued) and
// p = expm1(r).
template <typename V>
V exp_reduce(V x, V& p) {
  using C = ExpConst<typename V::T>;
  V k = round_nearest(x * set1(C::kLog2e));
  V r = fnmadd(k, set1(C::kLn2Hi), x);
  r = fnmadd(k, set1(C::kLn2Lo), r);
  V q = set1(C::kInvFact[C::kDegree]);
  for (int i = C::kDegree - 1; i >= 2; --i) q = fmadd(q, r, set1(C::kInvFact[i]));
  p = fmadd(r * r, q, r);
  return k;
}

}  // namespace detail

template <typename V>
V exp(V x) {
  using C = ExpConst<typename V::T>;
  V p;
  V k = detail::exp_reduce(clamp(x, set1(C::kLo), set1(C::kHi)), p);
  // 2^k in two normal factors so results near overflow and in the subnormal range are right:
  // (1 + p) * 2^k1 is exact-scaled, the final multiply rounds once (gradual underflow).
  V k1 = floor(k * set1(typename V::T(0.5)));
  V s1 = pow2i(k1);
  return fmadd(p, s1, s1) * pow2i(k - k1);
}

// exp for arguments known to be <= 0 (x - max in softmax-like sums), flushing results that would
// be subnormal (x < kLoNormal) to 0: a third less work than exp(). NaN gives NaN, -inf gives 0.
template <typename V>
V exp_nonpositive(V x) {
  using C = ExpConst<typename V::T>;
  V p;
  // Clamped at kLoNormal, 2^k is normal: one scaling factor suffices.
  V k = detail::exp_reduce(max(set1(C::kLoNormal), x), p);
  V s = pow2i(k);
  return select(lt(x, set1(C::kLoNormal)), zero<V>(), fmadd(p, s, s));
}

namespace detail {

// expm1 for kLoM1 <= x with 2^k normal (x below about 87 for float, 708 for double).
template <typename V>
V expm1_reduced(V x, V& k, V& p) {
  using T = typename V::T;
  k = exp_reduce(x, p);
  // 2^k * p + (2^k - 1): 2^k - 1 is exact for small |k| and the one fma keeps x near 0 accurate
  // (k = 0 gives p itself).
  V s = pow2i(k);
  return fmadd(p, s, s - set1(T(1)));
}

}  // namespace detail

template <typename V>
V expm1(V x) {
  using C = ExpConst<typename V::T>;
  V k, p;
  V small = detail::expm1_reduced(clamp(x, set1(C::kLoM1), set1(C::kHi)), k, p);
  // Near overflow 2^k alone is not finite; there expm1 == exp, scaled in two normal factors.
  V k1 = floor(k * set1(typename V::T(0.5)));
  V s1 = pow2i(k1);
  V big = fmadd(p, s1, s1) * pow2i(k - k1);
  return select(gt(k, set1(C::kBigK)), big, small);
}

// expm1 for arguments known to be <= kMaxBounded (no overflow path): about half the work of
// expm1(). Same accuracy; NaN gives NaN and x below kLoM1 gives -1.
template <typename V>
V expm1_bounded(V x) {
  using C = ExpConst<typename V::T>;
  V k, p;
  return detail::expm1_reduced(max(set1(C::kLoM1), x), k, p);
}

// Coefficients of log1p_unit's series 2 atanh(f) = 2 f (1 + f^2/3 + f^4/5 + ...). With
// |f| <= (sqrt2 - 1) / (sqrt2 + 1), f^2 <= 0.0295 and the first dropped term is below 2^-28
// (float, 5 terms) or 2^-55 (double, 11 terms) relative.
template <typename T>
struct Log1pConst;
template <>
struct Log1pConst<float> {
  static constexpr int kTerms = 5;
  static constexpr float kLn2 = 0.693147180559945309f;
};
template <>
struct Log1pConst<double> {
  static constexpr int kTerms = 11;
  static constexpr double kLn2 = 0.693147180559945309;
};

// log1p(e) for 0 <= e <= 1 (NaN gives NaN), about 1-2 ulp, relative accuracy kept for tiny e.
// 1 + e = 2^k m with k in {0, 1} and m in [1/sqrt2, sqrt2]; log(m) = 2 atanh((m - 1) / (m + 1)),
// where (m - 1) / (m + 1) is e / (2 + e) for k = 0 and (e - 1) / (e + 3) for k = 1, so 1 + e is
// never rounded.
template <typename V>
V log1p_unit(V e) {
  using T = typename V::T;
  using C = Log1pConst<T>;
  auto k1 = gt(e, set1(T(0.41421356237309505)));
  V f = select(k1, e - set1(T(1)), e) / (e + select(k1, set1(T(3)), set1(T(2))));
  V g = f * f;
  V p = set1(T(1) / T(2 * C::kTerms - 1));
  for (int i = C::kTerms - 2; i >= 0; --i) p = fmadd(p, g, set1(T(1) / T(2 * i + 1)));
  V two_f = f + f;
  return fmadd(two_f, p, select(k1, set1(C::kLn2), zero<V>()));
}

// exp(-s * x^2) for s a power of two and finite x. x^2 is split exactly into h + l (an fma gives
// the rounding error l), and exp(-s (h + l)) = exp(-s h) (1 - s l) to within (s l)^2: a plain
// exp(-x * x) would be off by up to x^2 / 2 ulp where x^2 is large.
template <typename V>
V exp_neg_sq(V x, typename V::T s) {
  V h = x * x;
  V l = fmadd(x, x, zero<V>() - h) * set1(s);
  V e = exp(zero<V>() - h * set1(s));
  return fnmadd(e, l, e);
}

namespace detail {

// erf(a) = a * P(a^2) for 0 <= a < kErfSmallEnd.
inline Vd erf_small(Vd a) {
  namespace C = erf_coeffs;
  Vd s = a * a;
  Vd p = set1(C::kErfSmall[C::kErfDegree]);
  for (int i = C::kErfDegree - 1; i >= 0; --i) p = fmadd(p, s, set1(C::kErfSmall[i]));
  return a * p;
}

// erfc(a) for kErfSmallEnd <= a, given e = exp(-a^2) (NaN a: e is NaN, so the result is too).
// erfc(a) exp(a^2) comes from a per-interval polynomial gathered lane by lane; the layout
// (12 intervals of width 0.5 from 0.75, then 11 of width 2 from 6.75) is tools/fit_erfc.py's.
inline Vd erfc_tail(Vd a, Vd e) {
  namespace C = erf_coeffs;
  // min(a, hi) gives hi for a NaN a: the gather index stays in range whatever a holds.
  Vd ac = max(min(a, set1(28.75)), set1(C::kErfSmallEnd));
  auto first = lt(ac, set1(6.75));
  // Both subtractions are exact (0.75 and 6.75 are multiples of ac's ulp), so ac never lands in
  // the neighbouring interval.
  Vd k1 = floor((ac - set1(0.75)) * set1(2.0));
  Vd k2 = floor((ac - set1(6.75)) * set1(0.5));
  Vd u = select(first, (ac - fmadd(k1, set1(0.5), set1(1.0))) * set1(4.0),
                ac - fmadd(k2, set1(2.0), set1(7.75)));
  constexpr int kRow = C::kTailDegree + 1;
  Vd idx = select(first, k1, k2 + set1(12.0)) * set1(double(kRow));
  const double* t = &C::kErfcTail[0][0];
  Vd p = gather(t + C::kTailDegree, idx);
  for (int j = C::kTailDegree - 1; j >= 0; --j) p = fmadd(p, u, gather(t + j, idx));
  return e * p;
}

}  // namespace detail

// erfc(a) for a >= 0 (or NaN), given e = exp_neg_sq(a, 1) or an equally accurate exp(-a^2).
inline Vd erfc_nonneg(Vd a, Vd e) {
  return select(lt(a, set1(erf_coeffs::kErfSmallEnd)), set1(1.0) - detail::erf_small(a),
                detail::erfc_tail(a, e));
}

inline Vd erf(Vd x) {
  // Past 6, erf rounds to +-1; the clamp keeps exp_neg_sq finite (and a NaN x).
  Vd a = min(set1(6.0), abs(x));
  Vd r = select(lt(a, set1(erf_coeffs::kErfSmallEnd)), detail::erf_small(a),
                set1(1.0) - detail::erfc_tail(a, exp_neg_sq(a, 1.0)));
  return copysign(r, x);
}

inline Vd erfc(Vd x) {
  // erfc underflows to 0 past 27.3; the clamp keeps exp_neg_sq finite (and a NaN x).
  Vd a = min(set1(28.75), abs(x));
  Vd q = erfc_nonneg(a, exp_neg_sq(a, 1.0));
  return select(lt(x, zero<Vd>()), set1(2.0) - q, q);
}

// float: evaluated in float64 and rounded once, so within about half an ulp.
inline Vf erf(Vf x) {
  Vd lo, hi;
  widen(x, lo, hi);
  return narrow(erf(lo), erf(hi));
}
inline Vf erfc(Vf x) {
  Vd lo, hi;
  widen(x, lo, hi);
  return narrow(erfc(lo), erfc(hi));
}

}  // namespace simd
}  // namespace PYDL_ISA_NS
}  // namespace pydl
