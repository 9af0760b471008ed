// The penalty kernels compiled with AVX-512.
#include "penalties/penalties.hpp"
#include "penalties/penalties_impl.hpp"

namespace pydl::avx512 {

void fill_penalties(PenaltyTable& t) {
  t.f32.sums = penalty_sums<float>;
  t.f64.sums = penalty_sums<double>;
  t.f32.backward = penalty_backward<float>;
  t.f64.backward = penalty_backward<double>;
}

}  // namespace pydl::avx512
