// Whole-array dropout entry points: the active ISA's kernels split across the thread pool. Chunk
// starts are multiples of 64, as the kernels require; masks never depend on the split.
#include "dropout/dropout.hpp"

#include <cmath>

#include "common/dispatch.hpp"
#include "common/parallel.hpp"

namespace pydl::dropout {
namespace {

// Elements per thread below which splitting the work costs more than it saves.
constexpr int64_t kGrain = 16384;

template <typename T>
T keep_scale(double p) {
  return static_cast<T>(1.0 / (1.0 - p));
}

}  // namespace

uint32_t threshold(double p) {
  // p * 2^32 is exact (a power-of-two scaling); llround rounds half away from zero.
  long long t = std::llround(std::ldexp(p, 32));
  return t > static_cast<long long>(UINT32_MAX) ? UINT32_MAX : static_cast<uint32_t>(t);
}

template <typename T>
void forward(T* y, uint8_t* mask, const T* x, const DropoutStream& s, double p, int64_t n) {
  const auto fwd = fns_of<T>(kernels().dropout).forward;
  const T scale = keep_scale<T>(p);
  parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) {
    fwd(y + b, mask + b, x + b, s, scale, b, e - b);
  });
}

template <typename T>
void backward(T* dx, const T* dy, const uint8_t* mask, double p, int64_t n) {
  const auto bwd = fns_of<T>(kernels().dropout).backward;
  const T scale = keep_scale<T>(p);
  parallel_chunks(n, kGrain,
                  [&](int64_t b, int64_t e) { bwd(dx + b, dy + b, mask + b, scale, e - b); });
}

template <typename T>
void backward_through_activation(T* dx, const T* dy, const uint8_t* mask, double p, Act act,
                                 T param, const T* s, int64_t n) {
  const auto bwd = fns_of<T>(kernels().dropout).backward;
  const auto act_bwd = fns_of<T>(kernels().act).backward;
  const T scale = keep_scale<T>(p);
  parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) {
    // Pieces small enough that the masked gradient stays in L1 between the two kernels.
    constexpr int64_t kPiece = 1024;
    alignas(64) T masked[kPiece];
    for (int64_t i = b; i < e; i += kPiece) {
      const int64_t len = e - i < kPiece ? e - i : kPiece;
      bwd(masked, dy + i, mask + i, scale, len);
      act_bwd(act, param, masked, s + i, dx + i, len);
    }
  });
}

void keep_mask(uint8_t* mask, const DropoutStream& s, int64_t n) {
  const auto gen = kernels().dropout.mask;
  parallel_chunks(n, kGrain, [&](int64_t b, int64_t e) { gen(mask + b, s, b, e - b); });
}

template void forward<float>(float*, uint8_t*, const float*, const DropoutStream&, double, int64_t);
template void forward<double>(double*, uint8_t*, const double*, const DropoutStream&, double,
                              int64_t);
template void backward<float>(float*, const float*, const uint8_t*, double, int64_t);
template void backward<double>(double*, const double*, const uint8_t*, double, int64_t);
template void backward_through_activation<float>(float*, const float*, const uint8_t*, double, Act,
                                                 float, const float*, int64_t);
template void backward_through_activation<double>(double*, const double*, const uint8_t*, double,
                                                  Act, double, const double*, int64_t);

}  // namespace pydl::dropout
