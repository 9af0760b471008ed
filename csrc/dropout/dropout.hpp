// Dropout: y = x * keep * scale with a keep mask drawn from a counter-based generator.
//
// Generator: Philox4x32-10 (Salmon et al., SC'11). The decision for element i of the flat C-order
// index space is a pure function of (seed, step, i), so a mask never depends on the thread count,
// on how the work is split, or on the ISA:
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (b & 0xffffffff, b >> 32, step & 0xffffffff, step >> 32)   with block b = i / 4
//   u       = word i % 4 of philox4x32_10(counter, key)
//   element i is dropped iff u < threshold, where threshold = round(p * 2^32) (half away from
//   zero), capped at 2^32 - 1 (reached only for p > 1 - 2^-33). p = 0 gives threshold 0: all kept.
// Kernels take the threshold, not p: the entry points below compute it (and scale = 1 / (1 - p)
// rounded to T) once.
//
// Shapes: every entry works on n contiguous elements; `first` is the flat index of element 0 and
// must be a multiple of 64 (a whole number of SIMD batches: the entry points split work with
// parallel_chunks, whose chunk starts are multiples of 64).
// Dtypes: x/y/dy/dx float32 or float64 (one entry each); the mask is uint8, 1 = kept, 0 = dropped
// (backward treats any nonzero byte as kept).
// Values: y = x * (keep ? scale : 0) and dx = dy * (mask ? scale : 0), i.e. the literal
// x * mask * scale: NaN stays NaN where kept, and a non-finite x gives NaN where dropped (0 * inf),
// as the same expression does in numpy and PyTorch.
// In-place use (y == x, dx == dy) is allowed. Inner kernels are single-threaded.
#pragma once

#include <cstdint>

#include "common/act.hpp"
#include "common/fill.hpp"

namespace pydl {

// Philox4x32-10 constants (Salmon et al. 2011): round multipliers and Weyl key increments.
constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;
constexpr int kPhiloxRounds = 10;

// Everything that determines a mask besides the element index.
struct DropoutStream {
  uint64_t seed = 0;
  uint64_t step = 0;
  uint32_t threshold = 0;  // drop iff u < threshold
};

template <typename T>
struct DropoutFns {
  // y: (n,), mask: (n,), x: (n,); elements first .. first + n - 1; one pass writes both outputs.
  void (*forward)(T* y, uint8_t* mask, const T* x, const DropoutStream& s, T scale, int64_t first,
                  int64_t n) = nullptr;
  // dx: (n,), dy: (n,), mask: (n,)
  void (*backward)(T* dx, const T* dy, const uint8_t* mask, T scale, int64_t n) = nullptr;
};

struct DropoutTable {
  // mask: (n,); elements first .. first + n - 1.
  void (*mask)(uint8_t* mask, const DropoutStream& s, int64_t first, int64_t n) = nullptr;
  DropoutFns<float> f32;
  DropoutFns<double> f64;
};

PYDL_DECLARE_FILL(fill_dropout, DropoutTable)

// Whole-array entry points (dropout.cpp): the active ISA, split across the pool; elements
// 0 .. n - 1 of the stream. p in [0, 1) is validated by the caller; scale = 1 / (1 - p) in T.
namespace dropout {
// The drop threshold of p: round(p * 2^32) (half away from zero), capped at 2^32 - 1.
uint32_t threshold(double p);
// y, mask, x: (n,)
template <typename T>
void forward(T* y, uint8_t* mask, const T* x, const DropoutStream& s, double p, int64_t n);
// dx, dy, mask: (n,)
template <typename T>
void backward(T* dx, const T* dy, const uint8_t* mask, double p, int64_t n);
// dx, dy, mask, s: (n,). The gradient through an activation and then dropout (y = dropout(f(x))):
// dx = (dy * (mask ? scale : 0)) * f'(.) from s (f's output, or its input when
// act_backward_reads_input(act)). The same bits as dropout's backward followed by the
// activation's (common/act.hpp); the masked gradient never goes to memory.
template <typename T>
void backward_through_activation(T* dx, const T* dy, const uint8_t* mask, double p, Act act,
                                 T param, const T* s, int64_t n);
// mask: (n,)
void keep_mask(uint8_t* mask, const DropoutStream& s, int64_t n);
}  // namespace dropout

}  // namespace pydl
