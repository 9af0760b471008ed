#include "activations/activations.hpp"

namespace pydl::avx2 {
void fill_activations(ActTable&) {}
}  // namespace pydl::avx2
