// GEMM: C = op(A) @ op(B) (+ C), then an optional fused epilogue (bias per column, activation).
//
// Shapes: op(A) is m x k, op(B) is k x n, C is m x n.
// Dtypes: float32 and float64 (one entry each).
// Assumptions (validated by the bindings): A and B are read through arbitrary element strides
// (a transpose is just swapped strides; packing absorbs it, so no transposed copy is ever made);
// C has unit column stride and row stride ldc >= n and does not overlap A, B or bias;
// k == 0 gives C = 0 (or leaves C unchanged when accumulating) before the epilogue.
#pragma once

#include <cstdint>

#include "activations/activations.hpp"
#include "common/act.hpp"
#include "common/fill.hpp"

namespace pydl {

template <typename T>
struct GemmArgs {
  int64_t m = 0, n = 0, k = 0;
  const T* a = nullptr;  // element (i, p) of op(A) at a[i * rs_a + p * cs_a]
  int64_t rs_a = 0, cs_a = 0;
  const T* b = nullptr;  // element (p, j) of op(B) at b[p * rs_b + j * cs_b]
  int64_t rs_b = 0, cs_b = 0;
  T* c = nullptr;  // element (i, j) at c[i * ldc + j]
  int64_t ldc = 0;
  bool accumulate = false;  // C += op(A) @ op(B) instead of C = ...
  // Epilogue, applied once to each finished element: c = act(c + bias[j]).
  const T* bias = nullptr;  // length n, or nullptr
  // If set, receives c + bias[j] before the activation (what GELU/SiLU backward reads), laid out
  // like C (element (i, j) at pre[i * ldc + j]); must not overlap C, A, B or bias.
  T* pre = nullptr;
  Act act = Act::kNone;
  T act_param = T(0);  // negative_slope for leaky_relu, alpha for elu
  // The activation kernels of the same ISA table, used by the epilogue on finished tiles.
  const ActFns<T>* act_fns = nullptr;
};

struct GemmTable {
  void (*sgemm)(const GemmArgs<float>&) = nullptr;
  void (*dgemm)(const GemmArgs<double>&) = nullptr;
};

PYDL_DECLARE_FILL(fill_gemm, GemmTable)

}  // namespace pydl
