// AVX-512 dropout: 16 Philox blocks run side by side, one per 32-bit lane, so a batch yields the
// keep bits of 64 consecutive elements; the masked AVX-512 loads/stores handle the ragged end.
#include <immintrin.h>

#include "dropout/dropout_simd.hpp"

namespace pydl::avx512 {
namespace {

// (hi, lo) = the 64-bit products a * m of each 32-bit lane. mul_epu32 multiplies the even lanes
// only, so the odd lanes are shifted down for a second multiply and the halves blended back.
inline void mulhilo(__m512i a, __m512i m, __m512i& hi, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(a, m);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}

inline __m512i splat(uint32_t v) { return _mm512_set1_epi32(static_cast<int>(v)); }

// Keep bits of the 64 elements of blocks b0 .. b0 + 15: bit j is element 4 * b0 + j.
inline uint64_t keep_bits(const DropoutStream& s, uint64_t b0) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __m512i c0 = _mm512_add_epi32(splat(static_cast<uint32_t>(b0)), lane);
  // A lane whose low counter word wrapped around carries into the high word.
  const __mmask16 carry = _mm512_cmplt_epu32_mask(c0, lane);
  const __m512i b0_hi = splat(static_cast<uint32_t>(b0 >> 32));
  __m512i c1 = _mm512_mask_add_epi32(b0_hi, carry, b0_hi, splat(1));
  __m512i c2 = splat(static_cast<uint32_t>(s.step));
  __m512i c3 = splat(static_cast<uint32_t>(s.step >> 32));
  const __m512i m0 = splat(kPhiloxM0), m1 = splat(kPhiloxM1);
  uint32_t k0 = static_cast<uint32_t>(s.seed), k1 = static_cast<uint32_t>(s.seed >> 32);
  constexpr int kXor3 = 0x96;  // ternarylogic truth table of a ^ b ^ c
  for (int r = 0; r < kPhiloxRounds; ++r) {
    if (r > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    __m512i hi0, lo0, hi1, lo1;
    mulhilo(c0, m0, hi0, lo0);
    mulhilo(c2, m1, hi1, lo1);
    c0 = _mm512_ternarylogic_epi32(hi1, c1, splat(k0), kXor3);
    c2 = _mm512_ternarylogic_epi32(hi0, c3, splat(k1), kXor3);
    c1 = lo1;
    c3 = lo0;
  }
  // Word w of lane j is element 4j + w: spread each word's 16 lane bits to every 4th bit.
  const __m512i t = splat(s.threshold);
  return _pdep_u64(_mm512_cmpge_epu32_mask(c0, t), 0x1111111111111111ull) |
         _pdep_u64(_mm512_cmpge_epu32_mask(c1, t), 0x2222222222222222ull) |
         _pdep_u64(_mm512_cmpge_epu32_mask(c2, t), 0x4444444444444444ull) |
         _pdep_u64(_mm512_cmpge_epu32_mask(c3, t), 0x8888888888888888ull);
}

// The first `len` bits set (len <= 64).
inline uint64_t first_bits(int64_t len) { return len >= 64 ? ~0ull : (1ull << len) - 1; }

inline void store_mask(uint8_t* mask, uint64_t valid, uint64_t keep) {
  _mm512_mask_storeu_epi8(mask, valid, _mm512_maskz_mov_epi8(keep, _mm512_set1_epi8(1)));
}

// The Philox lanes of dropout_simd.hpp.
struct Keep {
  static constexpr int64_t kBatch = 64;  // 16 lanes x 4 Philox output words
  static uint64_t keep_bits(const DropoutStream& s, uint64_t b0) {
    return avx512::keep_bits(s, b0);
  }
  static void store_mask(uint8_t* mask, uint64_t keep, int64_t len) {
    ::pydl::avx512::store_mask(mask, first_bits(len), keep);
  }
};

}  // namespace

void fill_dropout(DropoutTable& t) { dropout_simd::fill_table<Keep>(t); }

}  // namespace pydl::avx512
