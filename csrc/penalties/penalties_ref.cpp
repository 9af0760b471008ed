// Reference penalty kernels (the generic dispatch target and the test oracle).
#include <cmath>

#include "penalties/penalties.hpp"
#include "penalties/penalties_impl.hpp"

namespace pydl::generic {
namespace {

// Independent partial sums per quantity break the chain of dependent additions (which would
// otherwise cost one add latency per element) while keeping an order that depends on n alone.
constexpr int kLanes = 8;

// sums: (2,), w: (n,)
template <typename T>
void penalty_sums(double* sums, const T* w, int64_t n) {
  double abs_sum[kLanes] = {};
  double sq_sum[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const double v = w[i + j];
      abs_sum[j] += std::fabs(v);
      sq_sum[j] += v * v;
    }
  }
  double a = 0.0, q = 0.0;
  for (; i < n; ++i) {
    const double v = w[i];
    a += std::fabs(v);
    q += v * v;
  }
  for (int j = 0; j < kLanes; ++j) {
    a += abs_sum[j];
    q += sq_sum[j];
  }
  sums[0] = a;
  sums[1] = q;
}

}  // namespace

void fill_penalties(PenaltyTable& t) {
  t.f32.sums = penalty_sums<float>;
  t.f64.sums = penalty_sums<double>;
  t.f32.backward = penalty_backward<float>;
  t.f64.backward = penalty_backward<double>;
}

}  // namespace pydl::generic
