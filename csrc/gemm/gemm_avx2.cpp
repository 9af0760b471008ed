// AVX2 + FMA GEMM: the blocked driver (gemm_driver.hpp) with 256-bit micro-kernels.
#include "gemm/gemm.hpp"
#include "gemm/gemm_driver.hpp"

namespace pydl::avx2 {
namespace {

// MR x NR = 6 rows x 2 vectors: 12 ymm accumulators, 2 for B and 1 broadcast (of 16 registers).
struct SgemmAvx2 {
  using T = float;
  static constexpr int MR = 6, NR = 16;
};

struct DgemmAvx2 {
  using T = double;
  static constexpr int MR = 6, NR = 8;
};

}  // namespace

void fill_gemm(GemmTable& t) { gemm_detail::fill_gemm_table<SgemmAvx2, DgemmAvx2>(t); }

}  // namespace pydl::avx2
