#include "activations/activations.hpp"

namespace pydl::generic {
void fill_activations(ActTable&) {}
}  // namespace pydl::generic
