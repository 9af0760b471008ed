// Code shared by the dropout translation units, compiled once per ISA (everything lives in
// pydl::PYDL_ISA_NS, see common/isa.hpp): the scalar Philox (the reference generator, also behind
// the philox4x32_10 binding) and the backward loop, which the compiler vectorises with each TU's
// flags as well as hand-written intrinsics would (it is bound by memory, not arithmetic).
#pragma once

#include <cstdint>

#include "common/isa.hpp"
#include "dropout/dropout.hpp"

namespace pydl {
namespace PYDL_ISA_NS {

// out = philox4x32_10(ctr, key): ten rounds, the key bumped by the Weyl increments between rounds.
inline void philox4x32_10(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < kPhiloxRounds; ++r) {
    if (r > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c0;
    uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c2;
    uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// dx: (n,), dy: (n,), mask: (n,)
template <typename T>
void dropout_backward(T* dx, const T* dy, const uint8_t* mask, T scale, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (mask[i] ? scale : T(0));
}

}  // namespace PYDL_ISA_NS
}  // namespace pydl
