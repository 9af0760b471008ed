// Embedding lookup: gather forward, scatter-add backward.
//
// forward   out (M, D) = w[idx] for w (V, D) and idx (M,) int64 in [0, V).
// backward  dw (V, D) += sum of dout[i] (M, D) over the i with idx[i] == v, added in increasing i;
//           rows with idx[i] == padding_idx get no gradient (padding_idx < 0: none).
//
// The backward first orders the positions by row (a counting sort, stable), then gives each task a
// block of rows: every row's sum runs in the same order whoever computes it, so dw is bit-identical
// for any thread count, and no two tasks write the same row.
// Dtypes: float32 and float64; arrays C-contiguous, not overlapping; indices validated by the
// bindings.
#pragma once

#include <cstdint>

#include "common/fill.hpp"

namespace pydl {

template <typename T>
struct EmbeddingFns {
  void (*forward)(T* out, const T* w, const int64_t* idx, int64_t m, int64_t d) = nullptr;
  void (*backward)(T* dw, const T* dout, const int64_t* idx, int64_t m, int64_t v, int64_t d,
                   int64_t padding_idx) = nullptr;
};

struct EmbeddingTable {
  EmbeddingFns<float> f32;
  EmbeddingFns<double> f64;
};

PYDL_DECLARE_FILL(fill_embedding, EmbeddingTable)

}  // namespace pydl
