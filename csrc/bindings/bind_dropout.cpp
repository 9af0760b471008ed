#include "bindings/bindings.hpp"

namespace pydl::bind {
void bind_dropout(pybind11::module_&) {}
}  // namespace pydl::bind
