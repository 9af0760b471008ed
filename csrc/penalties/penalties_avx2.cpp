// The penalty kernels compiled with AVX2 + FMA.
#include "penalties/penalties.hpp"
#include "penalties/penalties_impl.hpp"

namespace pydl::avx2 {

void fill_penalties(PenaltyTable& t) {
  t.f32.sums = penalty_sums<float>;
  t.f64.sums = penalty_sums<double>;
  t.f32.backward = penalty_backward<float>;
  t.f64.backward = penalty_backward<double>;
}

}  // namespace pydl::avx2
