#include "gemm/gemm.hpp"

namespace pydl::avx512 {
void fill_gemm(GemmTable&) {}
}  // namespace pydl::avx512
