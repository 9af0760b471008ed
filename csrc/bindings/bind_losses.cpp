#include "bindings/bindings.hpp"

namespace pydl::bind {
void bind_losses(pybind11::module_&) {}
}  // namespace pydl::bind
