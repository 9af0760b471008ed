// AVX2 dropout: 2 x 8 Philox blocks run side by side, one per 32-bit lane, so a batch yields the
// keep bits of 64 consecutive elements; the loops over x and y are dropout_simd.hpp's.
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

// Philox counters (c0, c1) of blocks b0 .. b0 + 7, one per 32-bit lane.
inline void block_counters(uint64_t b0, __m256i& c0, __m256i& c1) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  c0 = _mm256_add_epi32(splat(static_cast<uint32_t>(b0)), lane);
  // A lane whose low counter word wrapped around carries into the high word: no_wrap is -1 in
  // the other lanes, so (hi + 1) + no_wrap adds the carry exactly where it happened.
  const __m256i no_wrap = cmpge_epu32(c0, lane);
  c1 = _mm256_add_epi32(splat(static_cast<uint32_t>(b0 >> 32) + 1u), no_wrap);
}

// Keep bits of the elements of one set of 8 blocks: word w of lane j is element 4j + w, so each
// word's 8 lane bits are spread to every 4th bit.
inline uint32_t keep_of(__m256i c0, __m256i c1, __m256i c2, __m256i c3, __m256i t) {
  return _pdep_u32(lane_bits(cmpge_epu32(c0, t)), 0x11111111u) |
         _pdep_u32(lane_bits(cmpge_epu32(c1, t)), 0x22222222u) |
         _pdep_u32(lane_bits(cmpge_epu32(c2, t)), 0x44444444u) |
         _pdep_u32(lane_bits(cmpge_epu32(c3, t)), 0x88888888u);
}

// Keep bits of the 64 elements of blocks b0 .. b0 + 15: bit j is element 4 * b0 + j. The two
// sets of 8 blocks run interleaved: each Philox round is a chain of dependent multiplies, and two
// independent chains keep the multipliers busy (one chain left them idle half the time).
inline uint64_t keep_bits(const DropoutStream& s, uint64_t b0) {
  __m256i a0, a1, d0, d1;
  block_counters(b0, a0, a1);
  block_counters(b0 + 8, d0, d1);
  const __m256i step_lo = splat(static_cast<uint32_t>(s.step));
  const __m256i step_hi = splat(static_cast<uint32_t>(s.step >> 32));
  __m256i a2 = step_lo, a3 = step_hi, d2 = step_lo, d3 = step_hi;
  const __m256i m0 = splat(kPhiloxM0), m1 = splat(kPhiloxM1);
  uint32_t k0 = static_cast<uint32_t>(s.seed), k1 = static_cast<uint32_t>(s.seed >> 32);
  for (int r = 0; r < kPhiloxRounds; ++r) {
    if (r > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    const __m256i key0 = splat(k0), key1 = splat(k1);
    __m256i hi0, lo0, hi1, lo1, hj0, lj0, hj1, lj1;
    mulhilo(a0, m0, hi0, lo0);
    mulhilo(d0, m0, hj0, lj0);
    mulhilo(a2, m1, hi1, lo1);
    mulhilo(d2, m1, hj1, lj1);
    a0 = _mm256_xor_si256(_mm256_xor_si256(hi1, a1), key0);
    d0 = _mm256_xor_si256(_mm256_xor_si256(hj1, d1), key0);
    a2 = _mm256_xor_si256(_mm256_xor_si256(hi0, a3), key1);
    d2 = _mm256_xor_si256(_mm256_xor_si256(hj0, d3), key1);
    a1 = lo1;
    d1 = lj1;
    a3 = lo0;
    d3 = lj0;
  }
  const __m256i t = splat(s.threshold);
  return static_cast<uint64_t>(keep_of(a0, a1, a2, a3, t)) |
         (static_cast<uint64_t>(keep_of(d0, d1, d2, d3, t)) << 32);
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
  static constexpr int64_t kBatch = 64;  // 2 x 8 lanes x 4 Philox output words
  static uint64_t keep_bits(const DropoutStream& s, uint64_t b0) { return avx2::keep_bits(s, b0); }
  static void store_mask(uint8_t* mask, uint64_t keep, int64_t len) {
    if (len == kBatch) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(mask),
                          bits_to_bytes(static_cast<uint32_t>(keep)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(mask + 32),
                          bits_to_bytes(static_cast<uint32_t>(keep >> 32)));
    } else {
      for (int64_t j = 0; j < len; ++j) mask[j] = (keep >> j) & 1u;
    }
  }
};

}  // namespace

void fill_dropout(DropoutTable& t) { dropout_simd::fill_table<Keep>(t); }

}  // namespace pydl::avx2
