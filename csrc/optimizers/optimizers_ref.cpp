#include "optimizers/optimizers.hpp"

namespace pydl::generic {
void fill_optimizers(OptimTable&) {}
}  // namespace pydl::generic
