// The SIMD penalty kernels (penalties_simd.hpp) compiled for AVX-512.
#include "penalties/penalties_simd.hpp"

namespace pydl::avx512 {
void fill_penalties(PenaltyTable& t) { penalty_simd::fill_table(t); }
}  // namespace pydl::avx512
