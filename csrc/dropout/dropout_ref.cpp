// Reference dropout: one scalar Philox call per 4 elements. The generic dispatch target and the
// oracle the SIMD variants are tested against.
#include "dropout/dropout.hpp"
#include "dropout/dropout_impl.hpp"

namespace pydl::generic {
namespace {

// Calls f(i, keep) for i in [0, n), element i being flat index first + i (first % 4 == 0).
template <typename F>
void for_each_keep(const DropoutStream& s, int64_t first, int64_t n, F&& f) {
  const uint32_t key[2] = {static_cast<uint32_t>(s.seed), static_cast<uint32_t>(s.seed >> 32)};
  for (int64_t i = 0; i < n;) {
    uint64_t b = static_cast<uint64_t>(first + i) / 4;
    const uint32_t ctr[4] = {static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32),
                             static_cast<uint32_t>(s.step), static_cast<uint32_t>(s.step >> 32)};
    uint32_t u[4];
    philox4x32_10(u, ctr, key);
    for (int w = 0; w < 4 && i < n; ++w, ++i) f(i, u[w] >= s.threshold);
  }
}

// mask: (n,)
void dropout_mask(uint8_t* mask, const DropoutStream& s, int64_t first, int64_t n) {
  for_each_keep(s, first, n, [&](int64_t i, bool keep) { mask[i] = keep; });
}

// y: (n,), mask: (n,), x: (n,)
template <typename T>
void dropout_forward(T* y, uint8_t* mask, const T* x, const DropoutStream& s, T scale,
                     int64_t first, int64_t n) {
  for_each_keep(s, first, n, [&](int64_t i, bool keep) {
    mask[i] = keep;
    y[i] = x[i] * (keep ? scale : T(0));
  });
}

}  // namespace

void fill_dropout(DropoutTable& t) {
  t.mask = dropout_mask;
  t.f32.forward = dropout_forward<float>;
  t.f64.forward = dropout_forward<double>;
  t.f32.backward = dropout_backward<float>;
  t.f64.backward = dropout_backward<double>;
}

}  // namespace pydl::generic
