#include "optimizers/optimizers.hpp"

namespace pydl::avx2 {
void fill_optimizers(OptimTable&) {}
}  // namespace pydl::avx2
