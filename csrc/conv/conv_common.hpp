// Pieces shared by the reference and GEMM convolutions (conv_ref.cpp, conv_gemm.hpp).
#pragma once

#include <cstdint>
#include <vector>

#include "common/isa.hpp"
#include "common/lanes.hpp"
#include "common/parallel.hpp"
#include "conv/conv.hpp"

namespace pydl {
namespace PYDL_ISA_NS {
namespace conv_detail {

// db[co] = sum over n, i, j of dy[n, co, i, j], one task per channel, in the lane order of
// common/lanes.hpp (the partial sums run on across the rows in n order): a 32x32x36 batch took
// 39 us as one scalar chain.
template <typename T>
void bias_grad(T* db, const T* dy, const ConvShape& s) {
  const int64_t ohw = s.oh * s.ow;
  parallel_for(s.c_out, [&](int64_t co) {
    T acc[kSumLanes] = {};
    for (int64_t n = 0; n < s.n; ++n) {
      const T* d = dy + (n * s.c_out + co) * ohw;
      for_lanes(ohw, [&](int64_t j, int l) { acc[l] += d[j]; });
    }
    db[co] = lane_total(acc);
  });
}

// Weight-gradient reduction over samples: samples are cut into at most kMaxBlocks contiguous
// blocks of at least min_block samples where there are enough (boundaries depend only on n and
// min_block), block(n0, n1, dst) writes the sum over its samples into dst (size elems), and the
// block partials are added in block order. The same bits for any thread count.
constexpr int64_t kMaxBlocks = 8;

template <typename T, typename Block>
void blocked_sample_sum(T* out, int64_t elems, int64_t n, Block block, int64_t min_block = 1) {
  int64_t blocks = n / (min_block > 1 ? min_block : 1);
  blocks = blocks < kMaxBlocks ? blocks : kMaxBlocks;
  if (blocks <= 1) {
    block(int64_t{0}, n, out);
    return;
  }
  std::vector<T> partial(static_cast<size_t>(blocks * elems));
  parallel_for(blocks, [&](int64_t b) {
    block(n * b / blocks, n * (b + 1) / blocks, partial.data() + b * elems);
  });
  parallel_chunks(elems, 4096, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e) {
      T acc = partial[static_cast<size_t>(e)];
      for (int64_t b = 1; b < blocks; ++b) acc += partial[static_cast<size_t>(b * elems + e)];
      out[e] = acc;
    }
  });
}

}  // namespace conv_detail
}  // namespace PYDL_ISA_NS
}  // namespace pydl
