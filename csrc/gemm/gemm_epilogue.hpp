// GEMM epilogue shared by the reference kernel and the blocked driver: c = act(c + bias[j]), with
// c + bias[j] optionally kept in g.pre.
//
// Shapes: c is rows x cols with row stride ldc; bias (if any) is indexed by the absolute column
// j0 + j. Included by several ISA translation units, so it lives in pydl::PYDL_ISA_NS.
#pragma once

#include <cstdint>

#include "common/isa.hpp"
#include "gemm/gemm.hpp"

namespace pydl {
namespace PYDL_ISA_NS {

template <typename T>
inline bool has_epilogue(const GemmArgs<T>& g) {
  return g.bias != nullptr || g.act != Act::kNone || g.pre != nullptr;
}

// Applies the epilogue to a finished block of C (still in cache when called from the driver): one
// call into the activation table per block, the bias add and the activation in one pass.
template <typename T>
void apply_epilogue(const GemmArgs<T>& g, T* c, int64_t ldc, int64_t rows, int64_t j0,
                    int64_t cols) {
  g.act_fns->epilogue(g.act, g.act_param, g.bias ? g.bias + j0 : nullptr, c,
                      g.pre ? g.pre + (c - g.c) : nullptr, ldc, rows, cols);
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
