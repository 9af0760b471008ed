// Reference penalty kernels (the generic dispatch target and the test oracle).
#include "penalties/penalties.hpp"
#include "penalties/penalties_impl.hpp"

namespace pydl::generic {

void fill_penalties(PenaltyTable& t) {
  t.f32.sums = penalty_sums<float>;
  t.f64.sums = penalty_sums<double>;
  t.f32.backward = penalty_backward<float>;
  t.f64.backward = penalty_backward<double>;
}

}  // namespace pydl::generic
