// The dropout loops written once over common/simd.hpp; dropout_avx2.cpp and dropout_avx512.cpp
// include this header with their Philox lanes (a `Keep` policy: kBatch, keep_bits, store_mask),
// which stay per ISA because simd.hpp has no integer vectors.
//
// Keep::kBatch              elements per Philox batch (4 per 32-bit lane)
// Keep::keep_bits(s, b)     keep bits of the kBatch elements of Philox blocks b, b + 1, ...
// Keep::store_mask(m, k, n) writes the first n of those bits as 0/1 bytes to m
#pragma once

#include <cstdint>

#include "common/isa.hpp"
#include "common/simd.hpp"
#include "dropout/dropout.hpp"
#include "dropout/dropout_impl.hpp"

namespace pydl {
namespace PYDL_ISA_NS {
namespace dropout_simd {

using simd::Vec;

// mask: (n,)
template <class Keep>
void dropout_mask(uint8_t* mask, const DropoutStream& s, int64_t first, int64_t n) {
  for (int64_t i = 0; i < n; i += Keep::kBatch) {
    const int64_t len = n - i < Keep::kBatch ? n - i : Keep::kBatch;
    Keep::store_mask(mask + i, Keep::keep_bits(s, static_cast<uint64_t>(first + i) / 4), len);
  }
}

// y: (n,), mask: (n,), x: (n,). y = x * (keep ? scale : 0), one multiply per element as in
// the reference (so NaN/inf behave alike on every ISA).
template <class Keep, typename T>
void dropout_forward(T* y, uint8_t* mask, const T* x, const DropoutStream& s, T scale,
                     int64_t first, int64_t n) {
  using V = Vec<T>;
  constexpr int64_t W = V::W;
  const V vscale = simd::set1(scale), zero = simd::zero<V>();
  for (int64_t i = 0; i < n; i += Keep::kBatch) {
    const int64_t len = n - i < Keep::kBatch ? n - i : Keep::kBatch;
    const uint64_t keep = Keep::keep_bits(s, static_cast<uint64_t>(first + i) / 4);
    Keep::store_mask(mask + i, keep, len);
    int64_t q = 0;
    for (; q + W <= len; q += W) {
      const V k = simd::select(simd::mask_from_bits<V>(keep >> q), vscale, zero);
      simd::storeu(y + i + q, simd::loadu(x + i + q) * k);
    }
    if (q < len) {
      const V k = simd::select(simd::mask_from_bits<V>(keep >> q), vscale, zero);
      simd::store_partial(y + i + q, simd::load_partial(x + i + q, len - q) * k, len - q);
    }
  }
}

template <class Keep>
void fill_table(DropoutTable& t) {
  t.mask = dropout_mask<Keep>;
  t.f32.forward = dropout_forward<Keep, float>;
  t.f64.forward = dropout_forward<Keep, double>;
  t.f32.backward = dropout_backward<float>;
  t.f64.backward = dropout_backward<double>;
}

}  // namespace dropout_simd
}  // namespace PYDL_ISA_NS
}  // namespace pydl
