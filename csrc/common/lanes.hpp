// Fixed-order sums that vectorise.
//
// A sum written as one scalar chain (acc += v[k]) runs at one add per 3-4 cycles: the compiler may
// not reorder floating-point adds. for_lanes cuts a run into kSumLanes interleaved partial sums
// (element k of a run goes to lane k % kSumLanes; every run starts at lane 0), which the compiler
// keeps in vector registers, and lane_total adds them in lane order. The order depends on the run
// lengths alone: the same bits on every ISA and for any thread count.
#pragma once

#include <cstdint>

namespace pydl {

constexpr int kSumLanes = 16;

// f(k, lane) for k in [0, len), lane = k % kSumLanes, in blocks of kSumLanes then the tail.
template <typename F>
inline void for_lanes(int64_t len, F&& f) {
  int64_t k = 0;
  for (; k + kSumLanes <= len; k += kSumLanes)
    for (int l = 0; l < kSumLanes; ++l) f(k + l, l);
  for (int l = 0; k < len; ++k, ++l) f(k, l);
}

// a[0] + a[1] + ... + a[kSumLanes - 1], left to right.
template <typename A>
inline A lane_total(const A (&a)[kSumLanes]) {
  A t = a[0];
  for (int l = 1; l < kSumLanes; ++l) t += a[l];
  return t;
}

}  // namespace pydl
