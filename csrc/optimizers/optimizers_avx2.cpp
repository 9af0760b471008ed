// The shared optimizer kernels (optimizers_impl.hpp) built for this translation unit's ISA.
#include "optimizers/optimizers_impl.hpp"

namespace pydl::avx2 {
void fill_optimizers(OptimTable& t) { fill_optim_table(t); }
}  // namespace pydl::avx2
