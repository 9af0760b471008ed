// The shared normalisation kernels (norm_impl.hpp) built for this translation unit's instruction
// set.
#include "norm/norm_impl.hpp"

namespace pydl::avx512 {
void fill_norm(NormTable& t) { fill_norm_table(t); }
}  // namespace pydl::avx512
