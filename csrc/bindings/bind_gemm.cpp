#include "bindings/bindings.hpp"

namespace pydl::bind {
void bind_gemm(pybind11::module_&) {}
}  // namespace pydl::bind
