#include "bindings/bindings.hpp"

namespace pydl::bind {
void bind_penalties(pybind11::module_&) {}
}  // namespace pydl::bind
