// AVX2 dropout: 8 Philox blocks run side by side, one per 32-bit lane, so a batch yields the keep
// bits of 32 consecutive elements; the ragged end of an array is finished with scalar code.
#include <immintrin.h>

#include "dropout/dropout.hpp"
#include "dropout/dropout_impl.hpp"

namespace pydl::avx2 {
namespace {

constexpr int64_t kBatch = 32;  // elements per batch: 8 lanes x 4 Philox output words

// (hi, lo) = the 64-bit products a * m of each 32-bit lane. mul_epu32 multiplies the even lanes
// only, so the odd lanes are shifted down for a second multiply and the halves blended back.
inline void mulhilo(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

inline __m256i splat(uint32_t v) { return _mm256_set1_epi32(static_cast<int>(v)); }

// All-ones in the lanes where a >= b as unsigned 32-bit integers (AVX2 only compares signed).
inline __m256i cmpge_epu32(__m256i a, __m256i b) {
  return _mm256_cmpeq_epi32(_mm256_max_epu32(a, b), a);
}

inline uint32_t lane_bits(__m256i m) {
  return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(m)));
}

// Keep bits of the 32 elements of blocks b0 .. b0 + 7: bit j is element 4 * b0 + j.
inline uint32_t keep_bits(const DropoutStream& s, uint64_t b0) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i c0 = _mm256_add_epi32(splat(static_cast<uint32_t>(b0)), lane);
  // A lane whose low counter word wrapped around carries into the high word: no_wrap is -1 in
  // the other lanes, so (hi + 1) + no_wrap adds the carry exactly where it happened.
  const __m256i no_wrap = cmpge_epu32(c0, lane);
  __m256i c1 = _mm256_add_epi32(splat(static_cast<uint32_t>(b0 >> 32) + 1u), no_wrap);
  __m256i c2 = splat(static_cast<uint32_t>(s.step));
  __m256i c3 = splat(static_cast<uint32_t>(s.step >> 32));
  const __m256i m0 = splat(kPhiloxM0), m1 = splat(kPhiloxM1);
  uint32_t k0 = static_cast<uint32_t>(s.seed), k1 = static_cast<uint32_t>(s.seed >> 32);
  for (int r = 0; r < kPhiloxRounds; ++r) {
    if (r > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    __m256i hi0, lo0, hi1, lo1;
    mulhilo(c0, m0, hi0, lo0);
    mulhilo(c2, m1, hi1, lo1);
    c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), splat(k0));
    c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), splat(k1));
    c1 = lo1;
    c3 = lo0;
  }
  // Word w of lane j is element 4j + w: spread each word's 8 lane bits to every 4th bit.
  const __m256i t = splat(s.threshold);
  return _pdep_u32(lane_bits(cmpge_epu32(c0, t)), 0x11111111u) |
         _pdep_u32(lane_bits(cmpge_epu32(c1, t)), 0x22222222u) |
         _pdep_u32(lane_bits(cmpge_epu32(c2, t)), 0x44444444u) |
         _pdep_u32(lane_bits(cmpge_epu32(c3, t)), 0x88888888u);
}

// 32 keep bits -> 32 mask bytes of 0/1: byte k gets bit k.
inline __m256i bits_to_bytes(uint32_t bits) {
  const __m256i byte_of_bit = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                               2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bit_in_byte = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i spread = _mm256_shuffle_epi8(splat(bits), byte_of_bit);
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit_in_byte), bit_in_byte);
  return _mm256_and_si256(set, _mm256_set1_epi8(1));
}

template <typename T>
struct Vec;
template <>
struct Vec<float> {
  using R = __m256;
  static constexpr int kLanes = 8;
  static R set1(float v) { return _mm256_set1_ps(v); }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, R v) { _mm256_storeu_ps(p, v); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  // vscale in the lanes whose bit in the low 8 bits of `bits` is set, 0 elsewhere.
  static R select(uint32_t bits, R vscale) {
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i on = _mm256_cmpeq_epi32(_mm256_and_si256(splat(bits), bit), bit);
    return _mm256_and_ps(_mm256_castsi256_ps(on), vscale);
  }
};
template <>
struct Vec<double> {
  using R = __m256d;
  static constexpr int kLanes = 4;
  static R set1(double v) { return _mm256_set1_pd(v); }
  static R load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, R v) { _mm256_storeu_pd(p, v); }
  static R mul(R a, R b) { return _mm256_mul_pd(a, b); }
  // vscale in the lanes whose bit in the low 4 bits of `bits` is set, 0 elsewhere.
  static R select(uint32_t bits, R vscale) {
    const __m256i bit = _mm256_setr_epi64x(1, 2, 4, 8);
    const __m256i on = _mm256_cmpeq_epi64(_mm256_and_si256(_mm256_set1_epi64x(bits), bit), bit);
    return _mm256_and_pd(_mm256_castsi256_pd(on), vscale);
  }
};

// mask: (n,)
void dropout_mask(uint8_t* mask, const DropoutStream& s, int64_t first, int64_t n) {
  for (int64_t i = 0; i < n; i += kBatch) {
    const uint32_t keep = keep_bits(s, static_cast<uint64_t>(first + i) / 4);
    if (n - i >= kBatch) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(mask + i), bits_to_bytes(keep));
    } else {
      for (int64_t j = 0; j < n - i; ++j) mask[i + j] = (keep >> j) & 1u;
    }
  }
}

// y: (n,), mask: (n,), x: (n,)
template <typename T>
void dropout_forward(T* y, uint8_t* mask, const T* x, const DropoutStream& s, T scale,
                     int64_t first, int64_t n) {
  using V = Vec<T>;
  const typename V::R vscale = V::set1(scale);
  for (int64_t i = 0; i < n; i += kBatch) {
    const uint32_t keep = keep_bits(s, static_cast<uint64_t>(first + i) / 4);
    if (n - i >= kBatch) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(mask + i), bits_to_bytes(keep));
      for (int q = 0; q < kBatch; q += V::kLanes) {
        V::store(y + i + q, V::mul(V::load(x + i + q), V::select(keep >> q, vscale)));
      }
    } else {
      for (int64_t j = 0; j < n - i; ++j) {
        const bool k = (keep >> j) & 1u;
        mask[i + j] = k;
        y[i + j] = x[i + j] * (k ? scale : T(0));
      }
    }
  }
}

}  // namespace

void fill_dropout(DropoutTable& t) {
  t.mask = dropout_mask;
  t.f32.forward = dropout_forward<float>;
  t.f64.forward = dropout_forward<double>;
  t.f32.backward = dropout_backward<float>;
  t.f64.backward = dropout_backward<double>;
}

}  // namespace pydl::avx2
