// The SIMD penalty kernels (penalties_simd.hpp) compiled for AVX2.
#include "penalties/penalties_simd.hpp"

namespace pydl::avx2 {
void fill_penalties(PenaltyTable& t) { penalty_simd::fill_table(t); }
}  // namespace pydl::avx2
