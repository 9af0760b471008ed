#include "gemm/gemm.hpp"

namespace pydl::generic {
void fill_gemm(GemmTable&) {}
}  // namespace pydl::generic
