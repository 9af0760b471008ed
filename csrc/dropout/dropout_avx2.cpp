// AVX2 dropout: 8 Philox blocks run side by side, one per 32-bit lane, so a batch yields the keep
// bits of 32 consecutive elements; the loops over x and y are dropout_simd.hpp's.
#include <immintrin.h>

#include "dropout/dropout_simd.hpp"

namespace pydl::avx2 {
namespace {

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

// The Philox lanes of dropout_simd.hpp.
struct Keep {
  static constexpr int64_t kBatch = 32;  // 8 lanes x 4 Philox output words
  static uint64_t keep_bits(const DropoutStream& s, uint64_t b0) { return avx2::keep_bits(s, b0); }
  static void store_mask(uint8_t* mask, uint64_t keep, int64_t len) {
    if (len == kBatch) {
      const __m256i bytes = bits_to_bytes(static_cast<uint32_t>(keep));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(mask), bytes);
    } else {
      for (int64_t j = 0; j < len; ++j) mask[j] = (keep >> j) & 1u;
    }
  }
};

}  // namespace

void fill_dropout(DropoutTable& t) { dropout_simd::fill_table<Keep>(t); }

}  // namespace pydl::avx2
