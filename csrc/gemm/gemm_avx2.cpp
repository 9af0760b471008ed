#include "gemm/gemm.hpp"

namespace pydl::avx2 {
void fill_gemm(GemmTable&) {}
}  // namespace pydl::avx2
