// AVX-512 GEMM: the blocked driver (gemm_driver.hpp) with 512-bit micro-kernels.
#include "gemm/gemm.hpp"
#include "gemm/gemm_driver.hpp"

namespace pydl::avx512 {
namespace {

// MR x NR = 14 rows x 2 vectors: 28 zmm accumulators, 2 for B and 1 broadcast (of 32 registers).
struct SgemmAvx512 {
  using T = float;
  static constexpr int MR = 14, NR = 32;
};

struct DgemmAvx512 {
  using T = double;
  static constexpr int MR = 14, NR = 16;
};

}  // namespace

void fill_gemm(GemmTable& t) { gemm_detail::fill_gemm_table<SgemmAvx512, DgemmAvx512>(t); }

}  // namespace pydl::avx512
