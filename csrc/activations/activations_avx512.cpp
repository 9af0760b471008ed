// The SIMD activation kernels (activations_impl.hpp) compiled for AVX-512.
#include "activations/activations_impl.hpp"

namespace pydl::avx512 {
void fill_activations(ActTable& t) { act_simd::fill_table(t); }
}  // namespace pydl::avx512
