// GEMM epilogue shared by the reference kernel and the blocked driver: c = act(c + bias[j]), with
// c + bias[j] optionally kept in g.pre.
//
// Shapes: c is rows x cols with row stride ldc; bias (if any) is indexed by the absolute column
// j0 + j. Included by several ISA translation units, so it lives in pydl::PYDL_ISA_NS.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/isa.hpp"
#include "gemm/gemm.hpp"

namespace pydl {
namespace PYDL_ISA_NS {

template <typename T>
inline bool has_epilogue(const GemmArgs<T>& g) {
  return g.bias != nullptr || g.act != Act::kNone || g.pre != nullptr;
}

// Applies the epilogue to a finished block of C (still in cache when called from the driver).
template <typename T>
void apply_epilogue(const GemmArgs<T>& g, T* c, int64_t ldc, int64_t rows, int64_t j0,
                    int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    T* row = c + r * ldc;
    if (g.bias) {
      const T* bias = g.bias + j0;
      for (int64_t j = 0; j < cols; ++j) row[j] += bias[j];
    }
    if (g.pre) std::memcpy(g.pre + (row - g.c), row, static_cast<size_t>(cols) * sizeof(T));
    if (g.act != Act::kNone) g.act_fns->forward(g.act, g.act_param, row, row, cols);
  }
}

// k == 0: the product is empty, so C is zero (or unchanged when accumulating) before the epilogue.
template <typename T>
void gemm_empty_k(const GemmArgs<T>& g) {
  for (int64_t i = 0; i < g.m; ++i) {
    T* row = g.c + i * g.ldc;
    if (!g.accumulate)
      for (int64_t j = 0; j < g.n; ++j) row[j] = T(0);
  }
  if (has_epilogue(g)) apply_epilogue(g, g.c, g.ldc, g.m, 0, g.n);
}

}  // namespace PYDL_ISA_NS
}  // namespace pydl
