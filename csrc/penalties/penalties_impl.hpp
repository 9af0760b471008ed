// The penalty gradient, written once as a plain loop and compiled per ISA (generic, AVX2, AVX-512;
// everything lives in pydl::PYDL_ISA_NS, see common/isa.hpp). The loop is memory-bound and the
// compiler vectorises it well with each TU's flags, so hand-written intrinsics would not pay off.
#pragma once

#include <cstdint>

#include "common/isa.hpp"
#include "penalties/penalties.hpp"

namespace pydl {
namespace PYDL_ISA_NS {

// grad: (n,), w: (n,)
template <typename T>
void penalty_backward(T* grad, const T* w, T l1, T l2x2, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T sign_l1 = w[i] > T(0) ? l1 : (w[i] < T(0) ? -l1 : T(0));
    grad[i] += sign_l1 + l2x2 * w[i];
  }
}

}  // namespace PYDL_ISA_NS
}  // namespace pydl
