#include "activations/activations.hpp"

namespace pydl::avx512 {
void fill_activations(ActTable&) {}
}  // namespace pydl::avx512
