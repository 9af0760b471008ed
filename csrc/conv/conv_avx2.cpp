// The GEMM-lowered convolution (conv_gemm.hpp) built for this translation unit's instruction set.
#include "conv/conv_gemm.hpp"

namespace pydl::avx2 {
void fill_conv(ConvTable& t) { fill_conv_table(t); }
}  // namespace pydl::avx2
