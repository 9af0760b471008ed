// The embedding kernels, written once and compiled into the generic, AVX2 and AVX-512 translation
// units (embedding_ref.cpp, embedding_avx2.cpp, embedding_avx512.cpp). See embedding.hpp.
#pragma once

#include <cstring>
#include <vector>

#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "embedding/embedding.hpp"

namespace pydl {
namespace PYDL_ISA_NS {
namespace embedding_detail {

// out (M, D) = w (V, D)[idx (M,)]
template <typename T>
void forward(T* out, const T* w, const int64_t* idx, int64_t m, int64_t d) {
  const int64_t grain = d >= 4096 ? 1 : 4096 / (d > 0 ? d : 1);
  parallel_chunks(m, grain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) std::memcpy(out + i * d, w + idx[i] * d, sizeof(T) * d);
  }, 1);
}

// dw (V, D) += scatter of dout (M, D) by idx (M,)
template <typename T>
void backward(T* dw, const T* dout, const int64_t* idx, int64_t m, int64_t v, int64_t d,
              int64_t padding_idx) {
  // Positions grouped by row, increasing within a row: start[r] .. start[r + 1] in `order`.
  std::vector<int64_t> start(static_cast<size_t>(v + 1), 0), order(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) ++start[static_cast<size_t>(idx[i] + 1)];
  for (int64_t r = 0; r < v; ++r) start[r + 1] += start[r];
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < m; ++i) order[static_cast<size_t>(fill[idx[i]]++)] = i;
  }
  const int64_t grain = d >= 4096 ? 1 : 4096 / (d > 0 ? d : 1);
  parallel_chunks(v, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      if (r == padding_idx) continue;
      T* row = dw + r * d;
      for (int64_t k = start[r]; k < start[r + 1]; ++k) {
        const T* g = dout + order[static_cast<size_t>(k)] * d;
        for (int64_t j = 0; j < d; ++j) row[j] += g[j];
      }
    }
  }, 1);
}

template <typename T>
void fill_fns(EmbeddingFns<T>& f) {
  f.forward = &forward<T>;
  f.backward = &backward<T>;
}

}  // namespace embedding_detail

inline void fill_embedding_table(EmbeddingTable& t) {
  embedding_detail::fill_fns(t.f32);
  embedding_detail::fill_fns(t.f64);
}

}  // namespace PYDL_ISA_NS
}  // namespace pydl
