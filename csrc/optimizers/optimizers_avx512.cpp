#include "optimizers/optimizers.hpp"

namespace pydl::avx512 {
void fill_optimizers(OptimTable&) {}
}  // namespace pydl::avx512
