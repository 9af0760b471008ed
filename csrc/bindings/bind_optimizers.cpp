#include "bindings/bindings.hpp"

namespace pydl::bind {
void bind_optimizers(pybind11::module_&) {}
}  // namespace pydl::bind
