// Python bindings of the weight penalties: L1, L2 and elastic net share one value kernel and one
// gradient kernel (penalties/penalties.hpp), parametrised by wd and l1_ratio (L1: 1, L2: 0).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "common/dispatch.hpp"
#include "common/parallel.hpp"

namespace pydl::bind {
namespace {

// Elements per partial sum. Fixed, so the summation order (and so the bits of the value) does
// not depend on the thread count; large enough that a block costs far more than a task hand-off.
constexpr int64_t kBlock = 1 << 15;
// Elements per thread below which splitting the gradient update costs more than it saves.
constexpr int64_t kGrain = 16384;

template <typename T>
const PenaltyFns<T>& penalty_fns() {
  if constexpr (std::is_same_v<T, float>) {
    return kernels().penalty.f32;
  } else {
    return kernels().penalty.f64;
  }
}

void check_hyper(double wd, double l1_ratio, const char* op) {
  require_range(wd, 0.0, std::numeric_limits<double>::infinity(), op, "wd");
  require_range(l1_ratio, 0.0, 1.0, op, "l1_ratio");
}

// (sum|w|, sum w^2) over fixed blocks, combined in block order.
template <typename T>
void block_sums(const py::array& w, double& abs_sum, double& sq_sum) {
  const auto sums = penalty_fns<T>().sums;
  const T* wp = cptr<T>(w);
  const int64_t n = static_cast<int64_t>(w.size());
  const int64_t n_blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> part(static_cast<size_t>(2 * n_blocks));
  {
    py::gil_scoped_release release;
    parallel_for(n_blocks, [&](int64_t b) {
      const int64_t begin = b * kBlock;
      const int64_t len = n - begin < kBlock ? n - begin : kBlock;
      sums(&part[static_cast<size_t>(2 * b)], wp + begin, len);
    });
  }
  abs_sum = 0.0;
  sq_sum = 0.0;
  for (int64_t b = 0; b < n_blocks; ++b) {
    abs_sum += part[static_cast<size_t>(2 * b)];
    sq_sum += part[static_cast<size_t>(2 * b + 1)];
  }
}

// wd * (l1_ratio * sum|w| + (1 - l1_ratio) * sum w^2).
double penalty_value(py::handle w_obj, double wd, double l1_ratio, const char* op) {
  py::array w = require_array(w_obj, op, "w");
  const DType dt = float_dtype(w, op, "w");
  check_hyper(wd, l1_ratio, op);
  w = contiguous(w);
  double abs_sum, sq_sum;
  if (dt == DType::kF32) {
    block_sums<float>(w, abs_sum, sq_sum);
  } else {
    block_sums<double>(w, abs_sum, sq_sum);
  }
  // A term whose weight is 0 is left out rather than multiplied by 0, so L1 and L2 give exactly
  // wd * sum|w| and wd * sum w^2 even when the other sum is inf.
  double v = 0.0;
  if (l1_ratio != 0.0) v += l1_ratio * abs_sum;
  if (l1_ratio != 1.0) v += (1.0 - l1_ratio) * sq_sum;
  return wd * v;
}

template <typename T>
void accumulate_grad(py::array& grad, const py::array& w, double wd, double l1_ratio) {
  const auto bwd = penalty_fns<T>().backward;
  T* gp = ptr<T>(grad);
  const T* wp = cptr<T>(w);
  const T l1 = static_cast<T>(wd * l1_ratio);
  const T l2x2 = static_cast<T>(2.0 * wd * (1.0 - l1_ratio));
  py::gil_scoped_release release;
  parallel_chunks(static_cast<int64_t>(w.size()), kGrain,
                  [&](int64_t b, int64_t e) { bwd(gp + b, wp + b, l1, l2x2, e - b); });
}

// grad += d/dw of penalty_value(w, wd, l1_ratio).
void penalty_backward(py::handle grad_obj, py::handle w_obj, double wd, double l1_ratio,
                      const char* op) {
  py::array w = require_array(w_obj, op, "w");
  const DType dt = float_dtype(w, op, "w");
  py::array grad = inout(grad_obj, shape_of(w), dt, op, "grad");
  require_no_overlap(grad, w, op, "grad", "w");
  check_hyper(wd, l1_ratio, op);
  w = contiguous(w);
  if (dt == DType::kF32) {
    accumulate_grad<float>(grad, w, wd, l1_ratio);
  } else {
    accumulate_grad<double>(grad, w, wd, l1_ratio);
  }
}

const char* const kValueRaises = R"doc(
Raises:
    TypeError: w is not a float32/float64 ndarray.
    ValueError: wd is negative or NaN, or l1_ratio is outside [0, 1] or NaN.
)doc";

const char* const kBackwardRaises = R"doc(
Raises:
    TypeError: w is not a float32/float64 ndarray, or grad is not an ndarray of w's dtype.
    ValueError: grad's shape differs from w's, grad is read-only, not C-contiguous or overlaps
        w, wd is negative or NaN, or l1_ratio is outside [0, 1] or NaN.
)doc";

}  // namespace

void bind_penalties(py::module_& m) {
  static const std::string l1_doc = std::string(R"doc(Return the L1 penalty wd * sum(|w|).

The sum is accumulated in float64 in fixed-size blocks combined in order, so the value is
bit-identical for any thread count.

Args:
    w: float32 or float64 array of any shape (strided views are fine).
    wd: Penalty weight, >= 0.

Returns:
    The penalty as a Python float (0.0 for an empty w).
)doc") + kValueRaises;
  static const std::string l2_doc = std::string(R"doc(Return the L2 penalty wd * sum(w**2).

The sum is accumulated in float64 in fixed-size blocks combined in order, so the value is
bit-identical for any thread count. SGD's weight_decay=lam corresponds to wd = lam / 2.

Args:
    w: float32 or float64 array of any shape (strided views are fine).
    wd: Penalty weight, >= 0.

Returns:
    The penalty as a Python float (0.0 for an empty w).
)doc") + kValueRaises;
  static const std::string en_doc =
      std::string(R"doc(Return the elastic-net penalty of w.

The penalty is wd * (l1_ratio * sum(|w|) + (1 - l1_ratio) * sum(w**2)); l1_ratio = 1 gives exactly l1_penalty and l1_ratio = 0 exactly l2_penalty. The sums are
accumulated in float64 in fixed-size blocks combined in order (bit-identical for any thread count).

Args:
    w: float32 or float64 array of any shape (strided views are fine).
    wd: Penalty weight, >= 0.
    l1_ratio: Share of the L1 term, in [0, 1]. Default 0.5.

Returns:
    The penalty as a Python float (0.0 for an empty w).
)doc") + kValueRaises;
  static const std::string l1_bwd_doc = std::string(R"doc(Add the L1 penalty gradient wd * sign(w) into grad in place.

sign(0) = 0, so weights that are exactly 0 get no gradient.

Args:
    grad: Writeable C-contiguous array of w's shape and dtype; updated in place (grad += ...).
    w: float32 or float64 array of any shape (strided views are fine).
    wd: Penalty weight, >= 0.

Returns:
    None.
)doc") + kBackwardRaises;
  static const std::string l2_bwd_doc = std::string(R"doc(Add the L2 penalty gradient 2 * wd * w into grad in place.

Args:
    grad: Writeable C-contiguous array of w's shape and dtype; updated in place (grad += ...).
    w: float32 or float64 array of any shape (strided views are fine).
    wd: Penalty weight, >= 0.

Returns:
    None.
)doc") + kBackwardRaises;
  static const std::string en_bwd_doc = std::string(R"doc(Add the elastic-net penalty gradient into grad in place.

The gradient is wd * (l1_ratio * sign(w) + 2 * (1 - l1_ratio) * w), with sign(0) = 0. l1_ratio = 1 / 0 give exactly the l1 / l2 gradients.

Args:
    grad: Writeable C-contiguous array of w's shape and dtype; updated in place (grad += ...).
    w: float32 or float64 array of any shape (strided views are fine).
    wd: Penalty weight, >= 0.
    l1_ratio: Share of the L1 term, in [0, 1]. Default 0.5.

Returns:
    None.
)doc") + kBackwardRaises;

  m.def(
      "l1_penalty",
      [](py::handle w, double wd) { return penalty_value(w, wd, 1.0, "l1_penalty"); },
      py::arg("w"), py::arg("wd"), l1_doc.c_str());
  m.def(
      "l2_penalty",
      [](py::handle w, double wd) { return penalty_value(w, wd, 0.0, "l2_penalty"); },
      py::arg("w"), py::arg("wd"), l2_doc.c_str());
  m.def(
      "elastic_net_penalty",
      [](py::handle w, double wd, double l1_ratio) {
        return penalty_value(w, wd, l1_ratio, "elastic_net_penalty");
      },
      py::arg("w"), py::arg("wd"), py::arg("l1_ratio") = 0.5, en_doc.c_str());
  m.def(
      "l1_penalty_backward",
      [](py::handle grad, py::handle w, double wd) {
        penalty_backward(grad, w, wd, 1.0, "l1_penalty_backward");
      },
      py::arg("grad"), py::arg("w"), py::arg("wd"), l1_bwd_doc.c_str());
  m.def(
      "l2_penalty_backward",
      [](py::handle grad, py::handle w, double wd) {
        penalty_backward(grad, w, wd, 0.0, "l2_penalty_backward");
      },
      py::arg("grad"), py::arg("w"), py::arg("wd"), l2_bwd_doc.c_str());
  m.def(
      "elastic_net_penalty_backward",
      [](py::handle grad, py::handle w, double wd, double l1_ratio) {
        penalty_backward(grad, w, wd, l1_ratio, "elastic_net_penalty_backward");
      },
      py::arg("grad"), py::arg("w"), py::arg("wd"), py::arg("l1_ratio") = 0.5, en_bwd_doc.c_str());
}

}  // namespace pydl::bind
