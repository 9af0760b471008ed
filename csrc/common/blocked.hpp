// Fixed-order parallel reductions shared by the kernel families (losses, penalties).
//
// Blocks are cut from the shape alone and their partial results added in block order, so a
// reduction gives the same bits for any thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "common/parallel.hpp"

namespace pydl {

// Sum over b in [0, n_blocks) of block(b, out) where block writes kParts doubles into out.
template <int kParts, typename F>
void blocked_sums(int64_t n_blocks, double (&total)[kParts], F&& block) {
  std::vector<double> partial(static_cast<size_t>(n_blocks * kParts));
  parallel_for(n_blocks, [&](int64_t b) { block(b, &partial[static_cast<size_t>(b * kParts)]); });
  for (int j = 0; j < kParts; ++j) total[j] = 0.0;
  for (int64_t b = 0; b < n_blocks; ++b)
    for (int j = 0; j < kParts; ++j) total[j] += partial[static_cast<size_t>(b * kParts + j)];
}

}  // namespace pydl
