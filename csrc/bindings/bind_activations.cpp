#include "bindings/bindings.hpp"

namespace pydl::bind {
void bind_activations(pybind11::module_&) {}
}  // namespace pydl::bind
